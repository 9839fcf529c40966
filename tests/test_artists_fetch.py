"""The pure parts of scripts/fetch_artists.py (no network)."""

import importlib.util
import urllib.parse
from pathlib import Path

import pytest
import yaml

from logic.artists.library import folder_name as library_folder_name

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fetch_artists.py"
spec = importlib.util.spec_from_file_location("fetch_artists", SCRIPT)
fetch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch)


def test_search_url_asks_for_public_domain_works_with_images():
    url = urllib.parse.urlsplit(fetch.search_url("Claude Monet", 20))
    query = dict(urllib.parse.parse_qsl(url.query))
    assert url.netloc == "api.artic.edu" and url.path == "/api/v1/artworks/search"
    assert query["q"] == "Claude Monet" and query["query[term][is_public_domain]"] == "true"
    assert "image_id" in query["fields"] and query["limit"] == "20"


def test_image_url_is_iiif_full_at_843_wide():
    assert fetch.image_url("2193cdda-2691-2802-0776-145dee77f7ea") == \
        "https://www.artic.edu/iiif/2/2193cdda-2691-2802-0776-145dee77f7ea/full/843,/0/default.jpg"
    with pytest.raises(fetch.FetchError):
        fetch.image_url("../../etc/passwd")


@pytest.mark.parametrize("name, folder", [("J. M. W. Turner", "J. M. W. Turner"), ("AC/DC", "AC DC"),
                                          ("Albrecht Dürer", "Albrecht Dürer"), ("../..", "Unknown artist"),
                                          ("  Henri de Toulouse-Lautrec ", "Henri de Toulouse-Lautrec")])
def test_folder_names_are_safe_and_match_the_library(name, folder):
    assert fetch.folder_name(name) == folder == library_folder_name(name)


def test_pick_works_keeps_public_domain_works_by_the_artist():
    records = [
        {"id": 1, "image_id": "abcdef12", "artist_title": "Claude Monet", "is_public_domain": True},
        {"id": 2, "image_id": None, "artist_title": "Claude Monet", "is_public_domain": True},
        {"id": 3, "image_id": "abcdef13", "artist_title": "Claude Monet", "is_public_domain": False},
        {"id": 4, "image_id": "abcdef14", "artist_title": "Someone Else", "is_public_domain": True},
        {"id": 5, "image_id": "abcdef15", "artist_title": "Claude Monét", "is_public_domain": True},
    ]
    assert [w["id"] for w in fetch.pick_works(records, "Claude Monet", 10)] == [1, 5]
    assert len(fetch.pick_works(records, "Claude Monet", 1)) == 1


def test_artist_yaml_is_valid_and_names_the_licence():
    text = fetch.artist_yaml("Katsushika Hokusai", ["Hokusai"], "1760-1849",
                             [{"id": 24645, "title": 'Under the Wave "off" Kanagawa', "date_display": "1830"}])
    data = yaml.safe_load(text)
    assert data["display_name"] == "Katsushika Hokusai" and data["aliases"] == ["Hokusai"]
    assert data["licence"] == "Public domain (CC0)" and "artic.edu" in data["source"]
    assert "24645" in data["works"][0]


def test_starter_list_and_selection():
    assert len(fetch.STARTERS) >= 20
    assert [s[0] for s in fetch.select(fetch.STARTERS, ["hokusai", "Van Gogh"])] == \
        ["Katsushika Hokusai", "Vincent van Gogh"]
    assert fetch.select(fetch.STARTERS, ["Nobody"]) == []
