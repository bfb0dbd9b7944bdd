"""The installable app: the manifest, the service worker served with scope "/" under the strict
policy, the worker's cache list (static files and the offline page only, never a page with PHI) and
the offline page, which says nothing about anyone."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import resolve

from tests.canaries import ADA_MRN, ADA_NAME
from tests.conftest import World
from web import pwa


def worker_config(response: Any) -> dict[str, Any]:
    """The configuration line the served worker starts with, as JSON."""
    first = response.content.decode().split("\n", 1)[0]
    match = re.fullmatch(r"self\.PORTAL_WORKER = (\{.*\});", first)
    assert match, first
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def test_the_manifest_makes_the_app_installable(db: Any) -> None:
    response = Client().get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/manifest+json"
    document = json.loads(response.content)
    assert document["start_url"] == "/" and document["scope"] == "/"
    assert document["display"] == "standalone"
    assert document["theme_color"] == pwa.THEME_COLOUR
    assert document["name"] == "Family care portal"
    sizes = {(icon["sizes"], icon["type"]) for icon in document["icons"]}
    assert {("192x192", "image/png"), ("512x512", "image/png"), ("any", "image/svg+xml")} <= sizes
    assert any(icon.get("purpose") == "maskable" for icon in document["icons"])
    for icon in document["icons"]:
        assert icon["src"].startswith("/static/")
        assert finders.find(icon["src"].removeprefix("/static/")), icon["src"]
    png = finders.find("web/icon-512.png")
    assert isinstance(png, str)
    with open(png, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 512 and int.from_bytes(header[20:24], "big") == 512


def test_the_manifest_speaks_spanish(db: Any) -> None:
    response = Client().get("/manifest.webmanifest", HTTP_ACCEPT_LANGUAGE="es")
    document = json.loads(response.content)
    assert document["lang"] == "es"
    assert document["name"] == "Portal de atención familiar"


def test_every_page_links_the_manifest_and_the_theme_colour(db: Any) -> None:
    body = Client().get("/sign-in/").content.decode()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in body
    assert f'<meta name="theme-color" content="{pwa.THEME_COLOUR}">' in body


def test_the_worker_is_served_for_the_whole_app_under_the_policy(db: Any) -> None:
    response = Client().get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Service-Worker-Allowed"] == "/"
    assert "no-cache" in response["Cache-Control"]
    policy = response["Content-Security-Policy"]
    assert "worker-src 'self'" in policy and "manifest-src 'self'" in policy
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert 'addEventListener("fetch"' in response.content.decode()


def test_pages_allow_the_worker_and_the_manifest(db: Any) -> None:
    policy = Client().get("/sign-in/")["Content-Security-Policy"]
    assert "worker-src 'self'" in policy and "manifest-src 'self'" in policy


def test_the_worker_keeps_static_files_and_the_offline_page_only(db: Any) -> None:
    config = worker_config(Client().get("/sw.js"))
    assert config["offline"] == "/offline/"
    assert config["assets"], "the worker keeps the app's static files"
    for url in config["assets"]:
        assert url.startswith("/static/"), url
        assert re.search(r"\.(css|js|svg|png)$", url), url
        assert finders.find(url.removeprefix("/static/")), url
    # The only non-static URL it stores resolves to the offline page, never to a page with PHI.
    assert resolve(config["offline"]).view_name == "web:offline"
    assert not any(url in ("/", "/sw.js") or url.startswith(("/api/", "/children/")) for url in config["assets"])


def test_the_worker_never_stores_what_it_fetches_from_the_network(db: Any) -> None:
    source = Client().get("/sw.js").content.decode()
    # The only writes to the cache are the install-time addAll of the configured list.
    assert source.count("cache.addAll(") == 1
    assert ".put(" not in source and "cache.add(" not in source


def test_the_cache_name_follows_the_files(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = worker_config(Client().get("/sw.js"))["cache"]
    pwa._assets_digest.cache_clear()
    monkeypatch.setattr(pwa, "PRECACHE_ASSETS", (*pwa.PRECACHE_ASSETS[:-1],))
    try:
        second = worker_config(Client().get("/sw.js"))["cache"]
    finally:
        pwa._assets_digest.cache_clear()
    assert first.startswith("portal-static-") and second != first


def test_the_offline_page_says_nothing_about_anyone(world: World) -> None:
    client = Client()
    client.force_login(world.users["guardian"])
    response = client.get("/offline/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "You are offline" in body
    for value in (ADA_NAME, ADA_MRN, world.users["guardian"].email):
        assert value not in body
    assert "csrfmiddlewaretoken" not in body and "Sign out" not in body
    # Signed in or not, the same page: nothing in it comes from the account or the session.
    assert body == Client().get("/offline/").content.decode()


def test_sign_out_still_clears_what_the_browser_kept(world: World) -> None:
    client = Client()
    client.force_login(world.users["guardian"])
    response = client.post("/sign-out/")
    # "storage" removes the service worker and its cache with the rest of the origin's storage.
    assert response["Clear-Site-Data"] == '"cache", "storage"'


def test_the_worker_script_is_registered_from_a_file(db: Any) -> None:
    path = finders.find("web/app.js")
    assert isinstance(path, str)
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    assert 'navigator.serviceWorker.register("/sw.js", { scope: "/" })' in source
