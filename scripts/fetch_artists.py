"""Fetch public-domain works for a starter list of artists from the Art Institute of Chicago.

    python scripts/fetch_artists.py [--per-artist 12] [--artists-dir assets/artists] [--only Hokusai Monet]

Uses the museum's open API (https://api.artic.edu/docs/): a search restricted to public-domain
works (``is_public_domain``; the museum releases those images under CC0), then IIIF image URLs at
843 px wide, the size the museum recommends. Each artist gets ``<artists-dir>/<Name>/`` with the
images and an artist.yaml naming the source and licence. Needs a network connection; run it on a
connected machine and copy the folder over. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

API = "https://api.artic.edu/api/v1/artworks/search"
IIIF = "https://www.artic.edu/iiif/2"
IMAGE_WIDTH = 843
USER_AGENT = "Atelier fetch_artists.py (local AI-art workstation; https://github.com/)"
FIELDS = "id,title,image_id,artist_title,date_display,is_public_domain"
ROOT = Path(__file__).resolve().parent.parent

# (folder / display name, search name as the museum spells the artist, aliases, years)
STARTERS = [
    ("Katsushika Hokusai", "Katsushika Hokusai", ["Hokusai"], "1760-1849"),
    ("Utagawa Hiroshige", "Utagawa Hiroshige", ["Hiroshige"], "1797-1858"),
    ("Vincent van Gogh", "Vincent van Gogh", ["Van Gogh"], "1853-1890"),
    ("Claude Monet", "Claude Monet", ["Monet"], "1840-1926"),
    ("Gustav Klimt", "Gustav Klimt", ["Klimt"], "1862-1918"),
    ("J. M. W. Turner", "Joseph Mallord William Turner", ["Turner", "William Turner"], "1775-1851"),
    ("Rembrandt van Rijn", "Rembrandt van Rijn", ["Rembrandt"], "1606-1669"),
    ("Johannes Vermeer", "Johannes Vermeer", ["Vermeer"], "1632-1675"),
    ("Paul Cezanne", "Paul Cezanne", ["Cézanne", "Cezanne"], "1839-1906"),
    ("Georges Seurat", "Georges Seurat", ["Seurat"], "1859-1891"),
    ("Edgar Degas", "Hilaire Germain Edgar Degas", ["Degas"], "1834-1917"),
    ("Pierre-Auguste Renoir", "Pierre-Auguste Renoir", ["Renoir"], "1841-1919"),
    ("Paul Gauguin", "Paul Gauguin", ["Gauguin"], "1848-1903"),
    ("Camille Pissarro", "Camille Pissarro", ["Pissarro"], "1830-1903"),
    ("Mary Cassatt", "Mary Cassatt", ["Cassatt"], "1844-1926"),
    ("Winslow Homer", "Winslow Homer", ["Homer"], "1836-1910"),
    ("Albrecht Durer", "Albrecht Dürer", ["Dürer", "Durer"], "1471-1528"),
    ("Francisco Goya", "Francisco José de Goya y Lucientes", ["Goya"], "1746-1828"),
    ("El Greco", "Doménikos Theotokópoulos", ["El Greco"], "1541-1614"),
    ("Odilon Redon", "Odilon Redon", ["Redon"], "1840-1916"),
    ("James McNeill Whistler", "James McNeill Whistler", ["Whistler"], "1834-1903"),
    ("Henri de Toulouse-Lautrec", "Henri de Toulouse-Lautrec", ["Toulouse-Lautrec", "Lautrec"], "1864-1901"),
]

log = logging.getLogger("fetch_artists")


class FetchError(Exception):
    """One sentence saying what went wrong and what to do."""


def folder_name(name: str) -> str:
    """A safe folder name: word characters, spaces, dots, hyphens, apostrophes; no path separators."""
    name = unicodedata.normalize("NFC", name)
    name = re.sub(r"[^\w .'\-]", " ", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name or "Unknown artist"


def search_url(artist: str, limit: int, page: int = 1) -> str:
    """The API search for public-domain works by ``artist`` (with images)."""
    query = {"q": artist, "query[term][is_public_domain]": "true", "fields": FIELDS,
             "limit": str(limit), "page": str(page)}
    return f"{API}?{urllib.parse.urlencode(query)}"


def image_url(image_id: str, width: int = IMAGE_WIDTH, iiif: str = IIIF) -> str:
    """IIIF Image API 2: the full image scaled to ``width`` pixels wide, as JPEG."""
    if not re.fullmatch(r"[0-9a-fA-F-]{8,64}", image_id or ""):
        raise FetchError(f"The image id {image_id!r} does not look like an IIIF id: the API answer changed.")
    return f"{iiif.rstrip('/')}/{image_id}/full/{width},/0/default.jpg"


def same_artist(record: dict, wanted: str) -> bool:
    """Whether a search hit is by the artist (full-text search also finds works about them)."""
    title = _plain(record.get("artist_title") or "")
    return bool(title) and (title == _plain(wanted) or _plain(wanted).split()[-1] in title.split())


def _plain(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).casefold().split())


def pick_works(records: list[dict], wanted: str, count: int) -> list[dict]:
    """Public-domain hits with an image by the wanted artist, at most ``count``."""
    works = [r for r in records if r.get("is_public_domain") and r.get("image_id") and same_artist(r, wanted)]
    return works[:count]


def artist_yaml(display: str, aliases: list[str], years: str, works: list[dict]) -> str:
    lines = [f"display_name: {json.dumps(display, ensure_ascii=False)}",
             f"aliases: {json.dumps(aliases, ensure_ascii=False)}", f"years: {json.dumps(years)}",
             "source: \"Art Institute of Chicago, open access (https://www.artic.edu/open-access)\"",
             "licence: \"Public domain (CC0)\"", "works:"]
    for work in works:
        line = f"{work.get('title', '')} ({work.get('date_display', '')}), https://www.artic.edu/artworks/{work.get('id')}"
        lines.append(f"  - {json.dumps(line, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def _get(url: str, timeout: float = 30.0) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "AIC-User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url} answered HTTP {exc.code}: try again later or with fewer artists.") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FetchError(f"Could not reach {urllib.parse.urlsplit(url).netloc} ({exc}): "
                         "run this on a machine with a network connection.") from None


def fetch_artist(display: str, search: str, aliases: list[str], years: str, folder: Path, count: int) -> int:
    """Download up to ``count`` works into ``folder/<display>``; returns how many were written."""
    answer = json.loads(_get(search_url(search, limit=min(100, count * 4))))
    works = pick_works(answer.get("data") or [], search, count)
    iiif = (answer.get("config") or {}).get("iiif_url") or IIIF
    target = folder / folder_name(display)
    target.mkdir(parents=True, exist_ok=True)
    written = 0
    for work in works:
        path = target / f"aic-{work['id']}.jpg"
        if not path.is_file():
            try:
                path.write_bytes(_get(image_url(work["image_id"], iiif=iiif)))
            except FetchError as exc:
                log.warning("Skipped work %s of %s: %s", work["id"], display, exc)
                continue
            time.sleep(0.2)  # be gentle with the museum's servers
        written += 1
    (target / "artist.yaml").write_text(artist_yaml(display, aliases, years, works), encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artists-dir", type=Path, default=ROOT / "assets" / "artists")
    parser.add_argument("--per-artist", type=int, default=12, help="works per artist (default 12)")
    parser.add_argument("--only", nargs="*", help="fetch only these artists (display names or aliases)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chosen = select(STARTERS, args.only)
    if not chosen:
        print(f"error: none of {args.only} is in the starter list: pick from "
              f"{', '.join(s[0] for s in STARTERS)}.", file=sys.stderr)
        return 2
    for display, search, aliases, years in chosen:
        try:
            count = fetch_artist(display, search, aliases, years, args.artists_dir, args.per_artist)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        log.info("%s: %d public-domain works", display, count)
    return 0


def select(starters, only: list[str] | None):
    if not only:
        return list(starters)
    wanted = {_plain(n) for n in only}
    return [s for s in starters if wanted & {_plain(n) for n in (s[0], s[1], *s[2])}]


if __name__ == "__main__":
    sys.exit(main())
