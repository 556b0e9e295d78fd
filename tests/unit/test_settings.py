"""Configuration loading: every error names the file, the key and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dispatcher.config import ConfigError
from dispatcher.settings import default_config_path, load


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path | str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, env=env or {})
    return str(info.value)


def test_defaults_load_and_are_usable() -> None:
    s = load(None, env={})
    assert s.service.area_codes == ("2220300",)
    assert s.sources["jma"].poll_offset_seconds == 20
    assert len(s.sources["jma"].feeds) == 4
    assert s.enabled_channels() == []
    assert s.files == (str(default_config_path()),)


def test_operator_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    path = write(tmp_path, '[web]\nport = 9090\n[jma]\nfeeds = ["http://127.0.0.1:1/feed.xml"]\n')
    s = load(path, env={})
    assert s.web.port == 9090
    assert s.web.host == "127.0.0.1"
    assert s.sources["jma"].feeds == ("http://127.0.0.1:1/feed.xml",)
    assert s.sources["jma"].poll_seconds == 60


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    msg = error_of(missing)
    assert str(missing) in msg and "not found" in msg


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = = 1\n")
    msg = error_of(path)
    assert str(path) in msg and "line 2" in msg


def test_unknown_section_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[delivry]\nbatch_size = 5\n")
    msg = error_of(path)
    assert str(path) in msg and "[delivry]" in msg and "did you mean 'delivery'" in msg


def test_misspelt_key_is_named_with_its_section_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nprot = 8080\n")
    msg = error_of(path)
    assert msg.startswith(str(path))
    assert "[web] unknown key 'prot'" in msg and "did you mean 'port'" in msg


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    path = write(tmp_path, '[web]\nport = "eighty"\n')
    msg = error_of(path)
    assert str(path) in msg and "[web] port" in msg and "expected an integer" in msg and "got str" in msg


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "[delivery]\nbatch_size = true\n"))
    assert "[delivery] batch_size" in msg and "expected an integer" in msg


def test_the_retry_budget_is_a_time_and_max_attempts_is_gone(tmp_path: Path) -> None:
    assert load(None, env={}).delivery.max_age == 86400.0
    assert load(write(tmp_path, "[delivery]\nmax_age = 3600\n"), env={}).delivery.max_age == 3600.0
    msg = error_of(write(tmp_path, "[delivery]\nmax_attempts = 8\n"))
    assert "[delivery] unknown key 'max_attempts'" in msg


def test_list_items_are_checked(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "[jma]\nfeeds = [1, 2]\n"))
    assert "[jma] feeds" in msg and "expected a string" in msg


def test_unknown_channel_is_rejected(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "[channels.telegarm]\nenabled = true\n"))
    assert "unknown channel [channels.telegarm]" in msg and "did you mean 'telegram'" in msg


def test_unknown_channel_key_is_rejected_even_when_disabled(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "[channels.email]\nenabled = false\nhots = 'x'\n"))
    assert "[channels.email] unknown key 'hots'" in msg and "did you mean 'host'" in msg


def test_channel_budgets_are_checked_and_a_window_needs_both_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[channels.webhook]\nwindow_requests = 200\nwindow_seconds = 900\nrate_per_second = 2\n")
    webhook = load(path).channels["webhook"]
    assert (webhook.rate_window, webhook.rate_per_second) == ((200, 900.0), 2.0)
    msg = error_of(write(tmp_path, "[channels.webhook]\nwindow_requests = 200\n", "half.toml"))
    assert "[channels.webhook] sets a window budget without 'window_seconds'" in msg and "half.toml" in msg
    msg = error_of(write(tmp_path, "[channels.telegram]\nrate_per_second = 0\n", "zero.toml"))
    assert "[channels.telegram] rate_per_second must be positive, not 0" in msg
    msg = error_of(write(tmp_path, "[channels.email]\nbatch_size = -1\n", "neg.toml"))
    assert "batch_size must be positive" in msg
    assert (
        load(write(tmp_path, "[channels.webhook]\nconcurrency = 64\n", "c.toml")).channels["webhook"].concurrency == 64
    )
    msg = error_of(write(tmp_path, "[channels.telegram]\nconcurrency = 0\n", "c0.toml"))
    assert "[channels.telegram] concurrency must be positive, not 0" in msg


def test_enabled_channel_needs_its_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "[channels.telegram]\nenabled = true\n")
    msg = error_of(path)
    assert str(path) in msg and "missing required key 'token'" in msg and "token_env" in msg


def test_secret_from_unset_environment_variable_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[channels.telegram]\nenabled = true\ntoken_env = "BOT_TOKEN"\n')
    msg = error_of(path, env={})
    assert "[channels.telegram] token_env" in msg and "BOT_TOKEN is not set" in msg


def test_secrets_come_from_env_or_file_and_never_show(tmp_path: Path) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text("hunter2-smtp\n", encoding="utf-8")
    path = write(
        tmp_path,
        '[channels.telegram]\nenabled = true\ntoken_env = "BOT_TOKEN"\n'
        f'[channels.email]\nenabled = true\nhost = "mail.example"\npassword_file = "{secret_file}"\n',
    )
    s = load(path, env={"BOT_TOKEN": "123:SECRET-TOKEN"})
    telegram = s.channels["telegram"].options
    email = s.channels["email"].options
    assert telegram.token == "123:SECRET-TOKEN"
    assert email.password == "hunter2-smtp"
    shown = repr(s)
    assert "SECRET-TOKEN" not in shown and "hunter2" not in shown


def test_secret_file_that_cannot_be_read(tmp_path: Path) -> None:
    path = write(tmp_path, f'[channels.email]\nenabled = true\npassword_file = "{tmp_path / "absent"}"\n')
    msg = error_of(path)
    assert "[channels.email] password_file" in msg and "cannot read" in msg


def test_environment_selects_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 7000\n")
    assert load(None, env={"DISPATCHER_CONFIG": str(path)}).web.port == 7000


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_config_cli_accepts_a_good_file(tmp_path: Path) -> None:
    result = run_cli("check-config", str(write(tmp_path, "[web]\nport = 8081\n")))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_check_config_cli_rejects_with_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[service]\nstate_dri = 'x'\n")
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and "unknown key 'state_dri'" in result.stderr


def test_mapping_tables_are_replaced_not_merged(tmp_path: Path) -> None:
    # The packaged [broadcast.groups] are examples for the illustrative districts;
    # a city's own mapping must not inherit them.
    defaults = load(None, env={})
    assert "heda" in defaults.sources["broadcast"].groups
    path = write(tmp_path, '[broadcast.groups]\nzone-a = ["numazu-hara"]\n')
    s = load(path, env={})
    assert dict(s.sources["broadcast"].groups) == {"zone-a": ("numazu-hara",)}


# -- values check-config must refuse (issue 17, item 7) ------------------------------------

LONG_SECRET = "s" * 32
# (operator file, environment, what the message must say after "site.toml: ")
REFUSED = [
    ("[service]\nlog_level = 'LOUD'\n", {}, "[service] log_level = 'LOUD': must be one of DEBUG, INFO, WARNING"),
    ("[service]\npublic_url = 'ftp://x'\n", {}, "[service] public_url = 'ftp://x': must be an http(s) URL with a host"),
    ("[web]\nport = 99999\n", {}, "[web] port = 99999: must be between 0 and 65535"),
    ("[web]\nheader_timeout_seconds = 0\n", {}, "[web] header_timeout_seconds = 0: must be greater than 0"),
    ("[delivery]\nlease_seconds = 0\n", {}, "[delivery] lease_seconds = 0: must be at least 1"),
    ("[delivery]\nbatch_size = 0\n", {}, "[delivery] batch_size = 0: must be at least 1"),
    ("[database]\npool_min = 5\npool_max = 2\n", {}, "[database] pool_min (5) must not exceed pool_max (2)"),
    ("[jma]\nfeeds = ['file:///etc/passwd']\n", {}, "[jma] feeds = ['file:///etc/passwd']: must be an http(s) URL"),
    ("[jma]\npoll_seconds = 3600\n", {}, "[jma] poll_seconds = 3600: must be between 1 and 1800"),
    ("[broadcast]\nmax_body_bytes = -1\n", {}, "[broadcast] max_body_bytes = -1: must be between 1024 and 4194304"),
    ("[broadcast]\nmax_skew_seconds = -5\n", {}, "[broadcast] max_skew_seconds = -5: must be between 1 and 3600"),
    (
        "[broadcast]\nenabled = true\nsecret_env = 'S'\n",
        {"S": "x"},
        "[broadcast] secret_env: the secret must be at least 32 bytes (it has 1)",
    ),
    (
        "[channels.email]\nenabled = true\nsender = 'nobody'\n",
        {},
        "[channels.email] sender = 'nobody': must be a mail address such as",
    ),
    (
        "[channels.email]\nenabled = true\nuse_tls = true\nstarttls = true\n",
        {},
        "[channels.email] use_tls and starttls are mutually exclusive",
    ),
    ("[channels.email]\nenabled = true\nport = 0\n", {}, "[channels.email] port = 0: must be between 1 and 65535"),
    (
        "[channels.telegram]\nenabled = true\ntoken_env = 'T'\nbase_url = 'ftp://x'\n",
        {"T": "42:TOKEN"},
        "[channels.telegram] base_url = 'ftp://x': must be an http(s) URL with a host",
    ),
    (
        "[channels.webhook]\nenabled = true\nurl = 'https://partner.example/hook'\nsecret_env = 'W'\n",
        {"W": "k"},
        "[channels.webhook] secret_env: the secret must be at least 32 bytes (it has 1)",
    ),
    ("[geo]\ndistricts = '/nonexistent/districts.geojson'\n", {}, "[geo] cannot load the layers"),
]


@pytest.mark.parametrize(("text", "env", "expected"), REFUSED, ids=[r[2].split(":")[0] for r in REFUSED])
def test_check_config_refuses_what_run_would_crash_on_or_be_disabled_by(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    env: dict[str, str],
    expected: str,
) -> None:
    from dispatcher.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = write(tmp_path, text)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {expected}" in err, err
    assert "Traceback" not in err
    for value in env.values():
        assert f"'{value}'" not in err, "a secret is never shown"


def test_check_config_accepts_long_secrets_and_what_run_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dispatcher.cli import main

    monkeypatch.setenv("S", LONG_SECRET)
    monkeypatch.setenv("T", "42:TOKEN")
    path = write(
        tmp_path,
        "[broadcast]\nenabled = true\nsecret_env = 'S'\n"
        "[channels.webhook]\nenabled = true\nurl = 'https://partner.example/hook'\nsecret_env = 'S'\n"
        "[channels.telegram]\nenabled = true\ntoken_env = 'T'\n[channels.email]\nenabled = true\n"
        "sender = 'bousai@localhost'\n",
    )
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    assert "configuration OK" in capsys.readouterr().out


def test_every_default_satisfies_its_own_constraints() -> None:
    import dataclasses

    from channels import REGISTRY, load_channel_class
    from dispatcher import constraints
    from dispatcher.settings import section_classes

    classes = [*section_classes().values(), *(load_channel_class(n).config_class for n in REGISTRY)]  # type: ignore[attr-defined]
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING and f.default != "":
                assert constraints.problem(f, f.default) is None, (cls.__name__, f.name)
