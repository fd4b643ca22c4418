"""moonraker.conf-compatible configuration: parsing, typing, errors, includes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint.config import ConfigError, default_config_path, load_config

DATA = Path(__file__).parent / "data" / "config"


def write(tmp_path: Path, text: str, name: str = "moonraker.conf") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_no_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(None, tmp_path)
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 7125
    assert config.server.klippy_uds_address is None
    assert config.warnings == ()
    assert config.source is None


def test_reference_moonraker_conf_loads(tmp_path: Path) -> None:
    config = load_config(DATA / "moonraker.conf", tmp_path)
    assert config.server.klippy_uds_address == "/tmp/klippy-sim/klippy.sock"
    assert config.authorization.trusted_clients == ("127.0.0.0/8",)
    # [machine] and [announcements] are accepted silently (Moonraker features with no options
    # that matter to trioprint)
    assert config.warnings == ()
    json.dumps(config.parsed())


def test_every_typed_field_converts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
host: all
port: 8080      # inline comment
klippy_uds_address: ~/printer_data/comms/klippy.sock
max_upload_size: 200
max_websocket_connections: 10
enable_debug_logging: yes

[authorization]
enable_api_key: off
login_timeout: 30
force_logins: True
trusted_clients:
    192.168.1.0/24
    printer.local
cors_domains: *.lan, https://my.example.com
max_login_attempts: 5

[file_manager]
queue_gcode_uploads: 1
config_path: ~/cfg

[database]
database_path:
""",
    )
    c = load_config(path, tmp_path)
    assert (c.server.host, c.server.port, c.server.max_upload_size) == ("0.0.0.0", 8080, 200)
    assert c.server.enable_debug_logging is True
    assert c.server.max_websocket_connections == 10
    assert c.authorization.enable_api_key is False
    assert c.authorization.force_logins is True
    assert c.authorization.login_timeout == 30
    assert c.authorization.trusted_clients == ("192.168.1.0/24", "printer.local")
    assert c.authorization.cors_domains == ("*.lan", "https://my.example.com")
    assert c.authorization.max_login_attempts == 5
    assert c.file_manager.queue_gcode_uploads is True
    assert c.file_manager.config_path == str(Path("~/cfg").expanduser())
    assert c.database.database_path is None
    assert c.sections["server"]["port"] == "8080"  # raw values are kept as read


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[server]\nport: abc\n", ["[server] port", "integer", "'abc'"]),
        ("[server]\nport: 70000\n", ["[server] port", "65535", "'70000'"]),
        ("[server]\nmax_upload_size: 0\n", ["[server] max_upload_size", "'0'"]),
        ("[authorization]\nforce_logins: maybe\n", ["[authorization] force_logins", "boolean"]),
        ("[authorization]\nmax_login_attempts: x\n", ["max_login_attempts", "integer"]),
        ("no header\n", [":1:", "cannot parse"]),
        ("port: 1\n", [":1:", "before any [section]"]),
        ("[server]\nport: 1\nport: 2\n", [":3:", "set twice"]),
        ("[server]\n[server]\n", [":2:", "appears twice"]),
        ("[include missing/*.conf]\n", ["no file matches"]),
    ],
)
def test_bad_values_name_file_section_option_and_type(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.conf", tmp_path)
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"\xff\xfe\x00[server]")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(binary, tmp_path)


def test_includes_merge_later_options_win_and_errors_name_the_included_file(
    tmp_path: Path,
) -> None:
    main = write(tmp_path, "[server]\nport: 7000\nhost: 127.0.0.1\n[include conf.d/*.conf]\n")
    write(tmp_path, "[server]\nport: 7001\n", "conf.d/a.conf")
    write(tmp_path, "[authorization]\ncors_domains: *.lan\n", "conf.d/b.conf")
    c = load_config(main, tmp_path)
    assert c.server.port == 7001
    assert c.server.host == "127.0.0.1"
    assert c.authorization.cors_domains == ("*.lan",)
    assert [f for f, _ in c.files] == ["moonraker.conf", "conf.d/a.conf", "conf.d/b.conf"]
    assert c.files[0][1] == ("server",)
    write(tmp_path, "[server]\nport: nope\n", "conf.d/a.conf")
    with pytest.raises(ConfigError, match=r"conf\.d/a\.conf: \[server\] port"):
        load_config(main, tmp_path)


def test_include_loops_are_refused(tmp_path: Path) -> None:
    main = write(tmp_path, "[server]\n[include other.conf]\n")
    write(tmp_path, "[include moonraker.conf]\n", "other.conf")
    with pytest.raises(ConfigError, match="include loop"):
        load_config(main, tmp_path)


def test_unknown_sections_and_options_are_kept_and_warned(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[server]\nssl_port: 7130\n[update_manager]\nchannel: dev\n[event_hook print]\n"
        "event: PrintStarted\n[power printer]\ntype: gpio\n",
    )
    c = load_config(path, tmp_path)
    assert c.sections["update_manager"] == {"channel": "dev"}
    assert c.section("server") == {"ssl_port": "7130"}
    assert c.section("absent") == {}
    assert sorted(c.warnings) == [
        "[server] ssl_port: unknown option, ignored",
        "[update_manager]: section not supported by trioprint, ignored",
    ]
    assert c.sections_with_prefix("event_hook") == {"print": {"event": "PrintStarted"}}
    parsed = c.parsed()
    assert parsed["update_manager"] == {"channel": "dev"}
    assert parsed["server"]["port"] == 7125
    json.dumps(parsed)


def test_continuation_lines_and_escaped_comment_characters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[event_hook a]\ncommand:\n  echo one\n  echo two \\# not a comment\n# a comment\n"
        "event: X ; trailing comment\n",
    )
    hook = load_config(path, tmp_path).sections_with_prefix("event_hook")["a"]
    assert hook["command"] == "echo one\necho two # not a comment"
    assert hook["event"] == "X"


def test_cli_overrides_win(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "[server]\nport: 9000\nhost: all\n"), tmp_path)
    assert c.with_overrides() is c
    over = c.with_overrides(port=0, host="::1")
    assert (over.server.port, over.server.host) == (0, "::1")


def test_default_config_path_prefers_trioprint_conf(tmp_path: Path) -> None:
    assert default_config_path(tmp_path) is None
    write(tmp_path, "", "config/moonraker.conf")
    assert default_config_path(tmp_path) == tmp_path / "config" / "moonraker.conf"
    write(tmp_path, "", "config/trioprint.conf")
    assert default_config_path(tmp_path) == tmp_path / "config" / "trioprint.conf"


lines = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["[server]", "[authorization]", "[x y]", "[include *.conf]", "  cont"]),
        st.builds(
            "{}: {}".format,
            st.sampled_from(["port", "host", "force_logins", "cors_domains", "x"]),
            st.text(max_size=10),
        ),
    ),
    max_size=12,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines)
def test_arbitrary_text_loads_or_raises_config_error(tmp_path: Path, text: list[str]) -> None:
    path = tmp_path / "fuzz.conf"
    path.write_text("\n".join(text), encoding="utf-8", errors="surrogatepass")
    message = None
    try:
        config = load_config(path, tmp_path)
        json.dumps(config.parsed())
    except ConfigError as exc:
        message = str(exc)
    if message is not None:
        assert message
        assert "\n" not in message  # one line: values are quoted with repr()
