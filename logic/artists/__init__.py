"""Artist-style matching: a library of artists as folders of reference images, a CLIP embedding
cache, a debiased matcher (centring + per-artist calibration), prompt rewriting and evaluation.

Engines call :func:`apply_artist_match`; the app and the CLI use :func:`load_matcher`.
"""

from .config import ArtistSettings, artist_settings
from .library import HOW_TO_ADD, Artist, scan_library
from .service import ArtistMatcher, MatchResult, apply_artist_match, load_matcher

__all__ = ["ArtistSettings", "artist_settings", "Artist", "scan_library", "HOW_TO_ADD", "ArtistMatcher",
           "MatchResult", "apply_artist_match", "load_matcher"]
