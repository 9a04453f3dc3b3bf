"""Issue 13: the dashboard and admin against the findings of the security review."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD


@pytest.mark.parametrize("target", [
    "https://evil.example/x", "//evil.example", "/\t/evil.example", "/\n/evil.example",
    "/\\evil.example", "/\\/evil.example", "\\\\evil.example",
    "javascript:alert(1)", "http:/evil.example", " //evil.example", "/\x00/evil.example",
    "/ /evil.example", "evil.example",
])
def test_next_only_follows_same_site_paths(wallets, browser, target):
    email = wallets.email(wallets.user("1"))
    response = browser.client.post("/login", query_string={"next": target}, data={
        "email": email, "password": PASSWORD, "csrf_token": browser.csrf()})
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"


def test_next_keeps_a_local_path_and_its_query(wallets, browser):
    email = wallets.email(wallets.user("1"))
    response = browser.client.post("/login", query_string={"next": "/usage?page=2"}, data={
        "email": email, "password": PASSWORD, "csrf_token": browser.csrf()})
    assert response.headers["Location"] == "/usage?page=2"
