"""Application settings validation (multiconnect.settings).

Model under test: heartbeat_interval and unhealthy_interval are integer seconds in
1..600 and 1..3600 with unhealthy ≥ 2 × heartbeat; webhooks.url is empty or an http(s) URL;
a PATCH body is a non-empty object of known keys; every rejection is a SettingsError whose
``field`` names the offending field.
"""

from __future__ import annotations

import pytest

from multiconnect.settings import (
    HEARTBEAT_MAX,
    UNHEALTHY_MAX,
    Settings,
    SettingsError,
    apply_patch,
    validate,
)

DEFAULT = Settings()


def test_defaults_match_the_real_client():
    assert DEFAULT.to_api() == {
        "heartbeat_interval": 5,
        "unhealthy_interval": 30,
        "webhooks": {"url": ""},
    }
    assert validate(DEFAULT) is DEFAULT


def test_derived_ownership_timing_follows_the_heartbeat():
    s = apply_patch(DEFAULT, {"heartbeat_interval": 7, "unhealthy_interval": 40})
    assert s.ownership_ttl == 14.0  # F = 2·h
    assert s.confirm_period == 3.5  # h / 2
    assert DEFAULT.ownership_ttl == 10.0 and DEFAULT.confirm_period == 2.5


# -- accepted patches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"heartbeat_interval": 1}, Settings(1, 30, "")),
        ({"heartbeat_interval": 15}, Settings(15, 30, "")),          # exactly u = 2h
        ({"unhealthy_interval": 10}, Settings(5, 10, "")),           # exactly u = 2h
        ({"unhealthy_interval": UNHEALTHY_MAX}, Settings(5, UNHEALTHY_MAX, "")),
        ({"heartbeat_interval": HEARTBEAT_MAX, "unhealthy_interval": 2 * HEARTBEAT_MAX},
         Settings(HEARTBEAT_MAX, 2 * HEARTBEAT_MAX, "")),
        ({"heartbeat_interval": 2, "unhealthy_interval": 4}, Settings(2, 4, "")),
        ({"webhooks": {"url": "https://hooks.example/wa"}},
         Settings(5, 30, "https://hooks.example/wa")),
        ({"webhooks": {"url": "http://10.0.0.7:8080/cb?x=1"}},
         Settings(5, 30, "http://10.0.0.7:8080/cb?x=1")),
    ],
)
def test_apply_patch_accepts(patch, expected):
    assert apply_patch(DEFAULT, patch) == expected


def test_apply_patch_leaves_unpatched_fields_alone():
    current = Settings(10, 60, "https://a.example/")
    assert apply_patch(current, {"heartbeat_interval": 20, "unhealthy_interval": 60}) == (
        Settings(20, 60, "https://a.example/")
    )
    assert current == Settings(10, 60, "https://a.example/"), "settings are immutable"


def test_empty_webhook_url_clears_it():
    current = Settings(webhooks_url="https://a.example/")
    assert apply_patch(current, {"webhooks": {"url": ""}}).webhooks_url == ""


# -- rejected values -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["heartbeat_interval", "unhealthy_interval"])
@pytest.mark.parametrize(
    "value",
    [True, False, 5.0, 30.5, "5", None, [5], {"s": 5}, 0, -1, -30],
    ids=["true", "false", "float", "fraction", "string", "null", "list", "object",
         "zero", "minus-one", "negative"],
)
def test_non_positive_or_non_integer_values_are_rejected(key, value):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {key: value})
    assert e.value.field == key
    assert key in str(e.value)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"heartbeat_interval": HEARTBEAT_MAX + 1, "unhealthy_interval": UNHEALTHY_MAX},
         "heartbeat_interval"),
        ({"unhealthy_interval": UNHEALTHY_MAX + 1}, "unhealthy_interval"),
        ({"heartbeat_interval": 10**30}, "heartbeat_interval"),
    ],
)
def test_values_above_the_maximum_are_rejected(patch, field):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, patch)
    assert e.value.field == field


@pytest.mark.parametrize(
    "patch",
    [
        {"unhealthy_interval": 9},                          # < 2 × 5
        {"heartbeat_interval": 16},                         # 30 < 2 × 16
        {"heartbeat_interval": 10, "unhealthy_interval": 19},
        {"heartbeat_interval": 1, "unhealthy_interval": 1},
    ],
)
def test_unhealthy_below_twice_heartbeat_is_rejected(patch):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, patch)
    assert e.value.field == "unhealthy_interval"
    assert "2 × heartbeat_interval" in e.value.message


def test_rejected_patch_changes_nothing():
    current = Settings(5, 30, "https://a.example/")
    with pytest.raises(SettingsError):
        apply_patch(current, {"heartbeat_interval": 6, "unhealthy_interval": 0})
    assert current == Settings(5, 30, "https://a.example/")


@pytest.mark.parametrize("key", ["heartbeat", "webhooks_url", "HEARTBEAT_INTERVAL", "media"])
def test_unknown_keys_are_rejected_and_named(key):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {key: 5})
    assert e.value.field == key
    assert "unknown" in e.value.message


def test_unknown_key_is_rejected_even_next_to_valid_ones():
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {"heartbeat_interval": 6, "colour": "blue"})
    assert e.value.field == "colour"


@pytest.mark.parametrize("body", [None, [], {}, "heartbeat_interval=5", 5, [("a", 1)]])
def test_body_must_be_a_non_empty_object(body):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, body)
    assert e.value.field == "body"


@pytest.mark.parametrize(
    "url",
    ["ftp://hooks.example/x", "hooks.example/x", "http://", "https:///path", "javascript:x",
     "file:///etc/passwd", "//hooks.example/x", " "],
)
def test_bad_webhook_urls_are_rejected(url):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {"webhooks": {"url": url}})
    assert e.value.field == "webhooks.url"


@pytest.mark.parametrize("url", ["http://:80/hook", "https://user@/hook"])
def test_webhook_url_without_a_host_is_rejected(url):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {"webhooks": {"url": url}})
    assert e.value.field == "webhooks.url"


@pytest.mark.parametrize("url", [5, None, ["https://a.example/"], {"u": 1}])
def test_webhook_url_must_be_a_string(url):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {"webhooks": {"url": url}})
    assert e.value.field == "webhooks.url"


@pytest.mark.parametrize(
    "value", ["https://a.example/", None, 5, {"url": "https://a.example/", "secret": "x"}]
)
def test_webhooks_must_be_an_object_with_only_a_url(value):
    with pytest.raises(SettingsError) as e:
        apply_patch(DEFAULT, {"webhooks": value})
    assert e.value.field == "webhooks"


# -- validate() and the stored form --------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (Settings(heartbeat_interval=0), "heartbeat_interval"),
        (Settings(heartbeat_interval=True), "heartbeat_interval"),
        (Settings(unhealthy_interval=-5), "unhealthy_interval"),
        (Settings(heartbeat_interval=20, unhealthy_interval=30), "unhealthy_interval"),
        (Settings(webhooks_url="gopher://x"), "webhooks.url"),
    ],
)
def test_validate_rejects_and_names_the_field(settings, field):
    with pytest.raises(SettingsError) as e:
        validate(settings)
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}: ")


def test_json_round_trip():
    s = Settings(7, 45, "https://a.example/x")
    assert Settings.from_json(s.to_json()) == s
    assert Settings.from_json({}) == DEFAULT
    assert Settings.from_json({"heartbeat_interval": 3, "other": 1}) == Settings(3, 30, "")


def test_from_json_validates():
    with pytest.raises(SettingsError) as e:
        Settings.from_json({"heartbeat_interval": "5"})
    assert e.value.field == "heartbeat_interval"


@pytest.mark.parametrize("url", [5, ["https://a.example/"]])
def test_stored_non_string_webhook_url_is_a_settings_error(url):
    with pytest.raises(SettingsError) as e:
        Settings.from_json({"webhooks_url": url})
    assert e.value.field == "webhooks.url"
