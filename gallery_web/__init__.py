"""The Atelier gallery's web layer: the run index, file serving, page dicts, templates and static files."""
