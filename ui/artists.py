"""The artist panel: top matches for the prompt with thumbnails of each artist's works, and a pick.

UI only: the matching lives in logic.artists. The matcher (CLIP + embeddings + index) is cached with
``st.cache_resource`` and rebuilt only when the settings or the library's image sets change.
"""

from __future__ import annotations

import streamlit as st

from logic.artists import HOW_TO_ADD, ArtistMatcher, ArtistSettings, artist_settings, load_matcher, scan_library
from logic.errors import UserError

NO_ARTIST = "No artist"


@st.cache_resource(show_spinner="Embedding the artist library (only new or changed artists)…", max_entries=2)
def cached_matcher(settings: ArtistSettings, fingerprint: tuple) -> ArtistMatcher:
    """``fingerprint`` (names and image-set hashes) makes a changed library a new cache entry."""
    return load_matcher(settings)


def _fingerprint(settings: ArtistSettings) -> tuple:
    if settings.demo and settings.folder is None:
        from logic.artists.demo import ensure_demo_artists

        ensure_demo_artists(settings.artists_dir)
    return tuple((a.name, a.image_set_hash()) for a in scan_library(settings.artists_dir))


def artist_panel(prompt: str, key: str, settings: ArtistSettings | None = None, demo: bool = False) -> dict | None:
    """Show the top artists for ``prompt`` and let the user pick one.

    Returns {"artist", "rewritten_prompt", "record"} for the chosen artist (``record`` is the
    details.json ``artist_match`` entry), or None when no artist is to be used.
    """
    settings = settings or artist_settings(demo=demo or None)
    try:
        fingerprint = _fingerprint(settings)
        if not fingerprint:
            st.info(HOW_TO_ADD.format(folder=settings.artists_dir))
            return None
        if not (prompt or "").strip():
            st.caption("Type a prompt to see which artists it resembles.")
            return None
        matcher = cached_matcher(settings, fingerprint)
        result = matcher.match(prompt)
    except UserError as exc:
        st.warning(str(exc))
        return None
    _show_matches(matcher, result)
    return _pick(matcher, result, prompt, key)


def _show_matches(matcher: ArtistMatcher, result) -> None:
    note = " · no strong match" if result.no_strong_match else ""
    st.caption(f"Closest artists ({result.model}, confidence {result.confidence:.0%}{note})")
    for rank, item in enumerate(result.matches, 1):
        name_col, images_col = st.columns([2, 3])
        name_col.markdown(f"**{rank}. {item['artist']}**  \nscore {item['score']:+.2f}")
        thumbs = [str(p) for p in matcher.thumbnails(item["artist"])]
        if thumbs:
            images_col.image(thumbs, width=72)
    if result.skipped and not result.no_strong_match:
        st.caption(f"Not rewritten by default: {result.skipped}.")


def _pick(matcher: ArtistMatcher, result, prompt: str, key: str) -> dict | None:
    options = [m["artist"] for m in result.matches] + [NO_ARTIST]
    default = options.index(result.artist) if result.artist in options else len(options) - 1
    choice = st.radio("Paint it in the style of", options, index=default, key=f"{key}-artist", horizontal=True)
    if choice == NO_ARTIST:
        st.caption(f"Prompt to run: {prompt}")
        return None
    final = result if choice == result.artist else matcher.match(prompt, chosen_artist=choice)
    st.caption(f"Prompt to run: {final.rewritten_prompt}")
    return {"artist": choice, "rewritten_prompt": final.rewritten_prompt, "record": final.record()}
