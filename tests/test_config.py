"""moonraker.conf-compatible configuration: the dialect, typing, errors, includes, warnings."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint.config import (
    AuthorizationConfig,
    Config,
    ConfigError,
    DatabaseConfig,
    FileManagerConfig,
    HistoryConfig,
    ServerConfig,
    default_config_path,
    load_config,
)

DATA = Path(__file__).parent / "data" / "config"
HOME = os.path.expanduser("~")


def write(folder: Path, text: str, name: str = "moonraker.conf") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text), tmp_path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and the reference file -------------------------------------------------------


def test_no_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(None, tmp_path)
    assert config == Config(data_dir=tmp_path)
    assert config.source is None
    assert config.server == ServerConfig()
    assert (config.server.host, config.server.port) == ("127.0.0.1", 7125)
    assert config.server.klippy_uds_address is None
    assert (config.server.max_upload_size, config.server.max_websocket_connections) == (1024, 50)
    assert config.server.enable_debug_logging is False
    assert config.authorization == AuthorizationConfig()
    assert config.authorization.enable_api_key is True
    assert config.authorization.login_timeout == 90
    assert config.authorization.default_source == "moonraker"
    assert config.authorization.max_login_attempts is None
    assert config.file_manager == FileManagerConfig()
    assert config.file_manager.check_klipper_config_path is True
    assert config.file_manager.enable_config_write_access is True
    assert config.database == DatabaseConfig()
    assert config.history == HistoryConfig()
    assert (config.sections, config.files, config.warnings) == ({}, (), ())
    assert config.section("server") == {}
    parsed = config.parsed()
    assert set(parsed) == {
        "server",
        "authorization",
        "file_manager",
        "database",
        "history",
        "simulator",
        "job_queue",
        "announcements",
        "machine",
        "frontend",
    }
    assert parsed["machine"] == {"provider": None, "shutdown_action": "poweroff"}
    assert parsed["frontend"] == {"path": None}
    assert parsed["simulator"] == {"speed": 1.0, "printer_config": None, "firmware": "klipper"}
    assert parsed["authorization"]["trusted_clients"] == []
    json.dumps(parsed)


def test_reference_moonraker_conf_loads(tmp_path: Path) -> None:
    config = load_config(DATA / "moonraker.conf", tmp_path)
    assert config.source == (DATA / "moonraker.conf").absolute()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 7125
    assert config.server.klippy_uds_address == "/tmp/klippy-sim/klippy.sock"
    assert config.authorization.trusted_clients == ("127.0.0.0/8",)
    # [machine] is a Moonraker section trioprint needs nothing from; [announcements] is read.
    assert config.warnings == ()
    assert config.files == (
        ("moonraker.conf", ("server", "machine", "authorization", "announcements")),
    )
    assert config.section("machine") == {"provider": "none"}
    assert config.announcements.enable_moonlight is False
    assert json.loads(json.dumps(config.parsed()))["announcements"]["enable_moonlight"] is False


def test_default_config_path_prefers_trioprint_conf(tmp_path: Path) -> None:
    assert default_config_path(tmp_path) is None
    (tmp_path / "config" / "moonraker.conf").mkdir(parents=True)  # a folder does not count
    assert default_config_path(tmp_path) is None
    (tmp_path / "config" / "moonraker.conf").rmdir()
    write(tmp_path, "", "config/moonraker.conf")
    assert default_config_path(tmp_path) == tmp_path / "config" / "moonraker.conf"
    write(tmp_path, "", "config/trioprint.conf")
    assert default_config_path(tmp_path) == tmp_path / "config" / "trioprint.conf"


# --- typed values --------------------------------------------------------------------------


def test_every_typed_field_converts(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        """
[server]
host: ALL
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
    10.0.0.5
    printer.local
cors_domains: *.lan, https://my.example.com
default_source: Moonraker
max_login_attempts: 5

[file_manager]
queue_gcode_uploads: 1
enable_object_processing: on
check_klipper_config_path: no
enable_config_write_access: false
config_path: ~/cfg
log_path: relative/logs
gcodes_path: /srv/gcodes

[database]
database_path:
enable_database_debug: TRUE

[history]
""",
    )
    assert c.server == ServerConfig(
        host="0.0.0.0",
        port=8080,
        klippy_uds_address=f"{HOME}/printer_data/comms/klippy.sock",
        max_upload_size=200,
        max_websocket_connections=10,
        enable_debug_logging=True,
    )
    assert c.authorization == AuthorizationConfig(
        enable_api_key=False,
        login_timeout=30,
        force_logins=True,
        trusted_clients=("192.168.1.0/24", "10.0.0.5", "printer.local"),
        cors_domains=("*.lan", "https://my.example.com"),
        default_source="moonraker",
        max_login_attempts=5,
    )
    assert c.file_manager == FileManagerConfig(
        queue_gcode_uploads=True,
        enable_object_processing=True,
        check_klipper_config_path=False,
        enable_config_write_access=False,
        config_path=f"{HOME}/cfg",
        log_path="relative/logs",  # relative paths are the caller's to resolve
        gcodes_path="/srv/gcodes",
    )
    assert c.database == DatabaseConfig(database_path=None, enable_database_debug=True)
    assert c.warnings == ()
    # the raw strings are kept as read
    assert c.section("server")["port"] == "8080"
    assert c.section("authorization")["trusted_clients"] == (
        "\n192.168.1.0/24\n10.0.0.5\nprinter.local"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, True) for t in ("true", "True", "YES", "on", "1", " yes ")]
    + [(f, False) for f in ("false", "FALSE", "no", "Off", "0")],
)
def test_boolean_spellings(tmp_path: Path, text: str, value: bool) -> None:
    assert (
        load(tmp_path, f"[server]\nenable_debug_logging: {text}\n").server.enable_debug_logging
        is value
    )


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("a", ("a",)),
        ("a, b,,c ,", ("a", "b", "c")),
        ("\n  a\n  b", ("a", "b")),
        ("a\n  b, c\n  d", ("a", "b", "c", "d")),
        ("", ()),
        ("\n  ,\n  ", ()),
    ],
)
def test_lists_split_on_lines_and_commas(tmp_path: Path, text: str, items: tuple[str, ...]) -> None:
    lines = text.split("\n")
    body = "\n".join([f"cors_domains: {lines[0]}", *lines[1:]])
    assert load(tmp_path, f"[authorization]\n{body}\n").authorization.cors_domains == items


def test_empty_optional_values_are_none(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[server]\nklippy_uds_address:\n[authorization]\nmax_login_attempts =\n"
        "[file_manager]\nconfig_path:   \n",
    )
    assert c.server.klippy_uds_address is None
    assert c.authorization.max_login_attempts is None
    assert c.file_manager.config_path is None


def test_host_all_port_zero_and_the_port_bounds(tmp_path: Path) -> None:
    assert load(tmp_path, "[server]\nhost: all\nport: 0\n").server == ServerConfig(
        host="0.0.0.0", port=0
    )
    assert load(tmp_path, "[server]\nhost: ::1\nport: 65535\n").server.port == 65535


# --- errors ----------------------------------------------------------------------------------

BAD_VALUES = [
    ("server", "port", "abc", "an integer"),
    ("server", "port", "", "an integer"),
    ("server", "port", "80.5", "an integer"),
    ("server", "port", "70000", "a port from 0 to 65535"),
    ("server", "port", "-1", "a port from 0 to 65535"),
    ("server", "host", "", "a host name or IP address"),
    ("server", "host", "my host", "a host name or IP address"),
    ("server", "max_upload_size", "0", "an integer of at least 1"),
    ("server", "max_upload_size", "lots", "an integer"),
    ("server", "max_websocket_connections", "0", "an integer of at least 1"),
    ("server", "enable_debug_logging", "maybe", "a boolean"),
    ("server", "enable_debug_logging", "", "a boolean"),
    ("authorization", "enable_api_key", "2", "a boolean"),
    ("authorization", "force_logins", "yess", "a boolean"),
    ("authorization", "login_timeout", "0", "an integer of at least 1"),
    ("authorization", "login_timeout", "ninety", "an integer"),
    ("authorization", "max_login_attempts", "x", "an integer"),
    ("authorization", "max_login_attempts", "0", "an integer of at least 1"),
    ("authorization", "default_source", "oauth", "one of 'moonraker', 'ldap'"),
    ("file_manager", "queue_gcode_uploads", "sometimes", "a boolean"),
    ("file_manager", "enable_config_write_access", "y", "a boolean"),
    ("database", "enable_database_debug", "verbose", "a boolean"),
    ("simulator", "speed", "fast", "a number"),
    ("simulator", "speed", "0", "a number greater than 0"),
    ("simulator", "speed", "-2", "a number greater than 0"),
    ("simulator", "speed", "inf", "a number greater than 0"),
]


@pytest.mark.parametrize(
    ("section", "option", "value", "expected"), BAD_VALUES, ids=lambda v: str(v) or "empty"
)
def test_bad_values_name_file_section_option_type_and_value(
    tmp_path: Path, section: str, option: str, value: str, expected: str
) -> None:
    path = write(tmp_path, f"[{section}]\n{option}: {value}\n")
    message = error(tmp_path, path.read_text())
    assert message.startswith(f"{path}: [{section}] {option}: expected {expected}")
    assert message.endswith(f", got {value!r}")


def test_the_first_bad_option_in_file_order_is_reported(tmp_path: Path) -> None:
    message = error(tmp_path, "[server]\nmax_upload_size: x\nport: y\n")
    assert "[server] max_upload_size: expected an integer, got 'x'" in message


def test_multi_line_bad_values_stay_on_one_line(tmp_path: Path) -> None:
    message = error(tmp_path, "[server]\nport:\n  1\n  2\n")
    assert message.endswith("[server] port: expected an integer, got '\\n1\\n2'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no header\n", ":1: 'no header' is outside a section (before any [section])"),
        ("# comment\n\nport: 1\n", ":3: 'port: 1' is outside a section"),
        ("[server]\nport\n", ":2: [server] expected 'option: value', got 'port'"),
        ("[server]\n: 1\n", ":2: [server] expected 'option: value', got ': 1'"),
        ("[a{0}]\nx\n", ":2: [a{0}] expected 'option: value', got 'x'"),
        ("[server]\nport: 1\nhost: x\nport: 2\n", ":4: [server] port: set twice in this section"),
        ("[server]\nPort: 1\nport: 2\n", ":3: [server] port: set twice"),
        ("[a]\n[b]\n\n[a]\n", ":4: section [a] appears twice in this file (first at line 1)"),
        ("[]\n", ":1: bad section header '[]'"),
        ("[ ]\n", ":1: bad section header '[ ]'"),
        ("[server\n", ":1: bad section header '[server'"),
        ("[include]\n", ":1: [include]: needs a file name or glob pattern"),
        ("[include missing/*.conf]\n", ":1: [include missing/*.conf]: no file matches"),
    ],
)
def test_syntax_errors_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "moonraker.conf"
    assert error(tmp_path, text).startswith(f"{path}{expected}")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^cannot read config file .*missing\.conf: No such file"
    ):
        load_config(tmp_path / "missing.conf", tmp_path)
    with pytest.raises(ConfigError, match=r"^cannot read config file .*: Is a directory$"):
        load_config(tmp_path, tmp_path)
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"[server]\nhost: \xff\n")
    with pytest.raises(
        ConfigError, match=r"binary\.conf: not UTF-8 text \(byte 0xff at offset 15\)"
    ):
        load_config(binary, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"cannot read config file .*: Permission denied"):
        load_config(path, tmp_path)


def test_a_utf8_bom_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "moonraker.conf"
    path.write_bytes("\ufeff[server]\nport: 1\n".encode())
    assert load_config(path, tmp_path).server.port == 1


# --- the dialect -----------------------------------------------------------------------------


def test_comments_continuations_and_escapes(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "; leading comment\n"
        "[event_hook a]\n"
        "command:\n"
        "  echo one\n"
        "    # an indented comment line is skipped, not part of the value\n"
        "\n"
        "  echo two \\# not a comment\n"
        "event: X ; trailing comment\n"
        "tag: a#b;c\n"
        "Tabbed = v\t# a tab, then a comment\n"
        "\tcontinued by a tab\n"
        "Mixed_Case: kept\n",
    )
    hook = c.sections_with_prefix("event_hook")["a"]
    # configparser keeps the empty first line of a value that starts on the next line
    assert hook["command"] == "\necho one\necho two # not a comment"
    assert hook["event"] == "X"
    assert hook["tag"] == "a#b;c"
    # option names are case-insensitive, like Moonraker's (configparser's default)
    assert hook["tabbed"] == "v\ncontinued by a tab"
    assert list(hook) == ["command", "event", "tag", "tabbed", "mixed_case"]


def test_indented_header_under_an_option_is_a_continuation(tmp_path: Path) -> None:
    c = load(tmp_path, "[event_hook a]\ncommand: x\n  [server]\n  port: 1\n")
    assert c.section("event_hook a")["command"] == "x\n[server]\nport: 1"
    assert "server" not in c.sections


def test_text_after_a_header_is_ignored_with_a_warning(tmp_path: Path) -> None:
    c = load(tmp_path, "[server]junk\nport: 1\n")
    assert c.server.port == 1
    assert c.warnings == (f"{tmp_path / 'moonraker.conf'}:1: text after [server] ignored: 'junk'",)


def test_sections_are_read_only_and_in_file_order(tmp_path: Path) -> None:
    c = load(tmp_path, "[zeta]\n[alpha]\nb: 1\na: 2\n[server]\n")
    assert list(c.sections) == ["zeta", "alpha", "server"]
    assert list(c.section("alpha")) == ["b", "a"]
    with pytest.raises(TypeError):
        c.sections["alpha"]["b"] = "3"  # type: ignore[index]


# --- includes --------------------------------------------------------------------------------


def test_includes_glob_merge_and_later_options_win(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "[server]\nport: 7000\nhost: 127.0.0.1\n[include conf.d/*.conf]\n[authorization]\n"
        "force_logins: true\n",
    )
    write(tmp_path, "[server]\nport: 7001\n[include ../extra.cfg]\n", "conf.d/a.conf")
    write(tmp_path, "[authorization]\ncors_domains: *.lan\n", "conf.d/b.conf")
    write(tmp_path, "[server]\nport: 7002\n", "conf.d/c.txt")  # does not match the glob
    write(tmp_path, "[database]\nenable_database_debug: yes\n", "extra.cfg")
    (tmp_path / "conf.d" / "dir.conf").mkdir()  # folders are skipped
    c = load_config(main, tmp_path)
    assert c.server.port == 7001
    assert c.server.host == "127.0.0.1"
    assert c.authorization.cors_domains == ("*.lan",)
    assert c.authorization.force_logins is True
    assert c.database.enable_database_debug is True
    # sections keep the place of their first appearance; the later file's option wins in place
    assert list(c.sections) == ["server", "database", "authorization"]
    assert c.section("server") == {"port": "7001", "host": "127.0.0.1"}
    assert c.files == (
        ("moonraker.conf", ("server", "authorization")),
        ("conf.d/a.conf", ("server",)),
        ("extra.cfg", ("database",)),
        ("conf.d/b.conf", ("authorization",)),
    )
    assert "include conf.d/*.conf" not in c.sections


def test_absolute_includes_and_files_outside_the_folder(tmp_path: Path) -> None:
    other = write(tmp_path, "[server]\nport: 9\n", "elsewhere/x.conf")
    main = write(tmp_path / "cfg", f"[include {other.parent}/*.conf]\n")
    c = load_config(main, tmp_path)
    assert c.server.port == 9
    assert c.files == (("moonraker.conf", ()), (str(other), ("server",)))


def test_an_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    main = write(tmp_path, "[server]\n[include conf.d/*.conf]\n")
    included = write(tmp_path, "[server]\nport: nope\n", "conf.d/a.conf")
    with pytest.raises(ConfigError) as info:
        load_config(main, tmp_path)
    assert str(info.value) == f"{included}: [server] port: expected an integer, got 'nope'"
    write(tmp_path, "[server]\nport: 1\nport: 2\n", "conf.d/a.conf")
    with pytest.raises(ConfigError, match=r"conf\.d/a\.conf:3: \[server\] port: set twice"):
        load_config(main, tmp_path)


def test_the_same_section_in_two_files_is_fine_but_not_twice_in_one(tmp_path: Path) -> None:
    main = write(tmp_path, "[server]\nport: 1\n[include a.conf]\n[server]\n")
    write(tmp_path, "[server]\nport: 2\n", "a.conf")
    with pytest.raises(ConfigError, match=r"moonraker\.conf:4: section \[server\] appears twice"):
        load_config(main, tmp_path)


def test_options_after_an_include_need_a_header(tmp_path: Path) -> None:
    write(tmp_path, "[server]\n", "a.conf")
    message = error(tmp_path, "[server]\n[include a.conf]\nport: 1\n")
    assert message.endswith(":3: 'port: 1' is outside a section (after [include a.conf])")


def test_include_loops_are_refused(tmp_path: Path) -> None:
    main = write(tmp_path, "[server]\n[include other.conf]\n")
    other = write(tmp_path, "[include moonraker.conf]\n", "other.conf")
    with pytest.raises(ConfigError) as info:
        load_config(main, tmp_path)
    assert str(info.value) == (
        f"{other}:1: [include moonraker.conf]: include loop: {main} -> {other} -> {main}"
    )
    write(tmp_path, "[include *.conf]\n", "moonraker.conf")  # includes itself
    with pytest.raises(ConfigError, match="include loop"):
        load_config(main, tmp_path)


def test_a_file_is_included_once(tmp_path: Path) -> None:
    # Moonraker refuses a file read twice even without a loop.
    main = write(tmp_path, "[include a.conf]\n[include b.conf]\n")
    write(tmp_path, "[include common.cfg]\n", "a.conf")
    b = write(tmp_path, "[include common.cfg]\n", "b.conf")
    common = write(tmp_path, "[server]\n", "common.cfg")
    with pytest.raises(ConfigError) as info:
        load_config(main, tmp_path)
    assert str(info.value) == (
        f"{b}:1: [include common.cfg]: {common} is already read; a file can be included once"
    )


# --- unknown things: kept and warned -------------------------------------------------------


def test_unknown_sections_and_options_are_kept_and_warned(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[server]\nssl_port: 7130\n[update_manager]\nchannel: dev\n[update_manager klipper]\n"
        "type: git_repo\n[event_hook print]\nevent: PrintStarted\n[power printer]\ntype: gpio\n"
        "[power]\n[machine]\nprovider: none\n[octoprint_compat]\n[announcements]\n"
        "[history]\nfoo: 1\n[Server]\n[no_such_plugin]\n",
    )
    assert c.section("update_manager") == {"channel": "dev"}
    assert c.section("server") == {"ssl_port": "7130"}
    assert c.section("absent") == {}
    f = tmp_path / "moonraker.conf"
    assert c.warnings == (
        f"{f}:2: [server] ssl_port: unknown option, ignored",
        f"{f}:11: [power]: needs a name, like [power NAME]; ignored",
        f"{f}:17: [history] foo: unknown option, ignored",
        f"{f}:18: [Server]: section not supported by trioprint, ignored"
        " (section names are case-sensitive: [server]?)",
        f"{f}:19: [no_such_plugin]: section not supported by trioprint, ignored",
    )
    # [update_manager] and [update_manager NAME] are the update manager's to check
    parsed = c.parsed()
    assert parsed["update_manager"] == {"channel": "dev"}
    assert parsed["server"]["port"] == 7125
    assert parsed["history"] == {}
    json.dumps(parsed)


def test_sections_with_prefix(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[event_hook a]\nevent: X\n[event_hook  two words]\nevent: Y\n[event_hooks z]\n"
        "[event_hook]\n[power p]\n",
    )
    assert c.sections_with_prefix("event_hook") == {
        "a": {"event": "X"},
        "two words": {"event": "Y"},
    }
    assert c.sections_with_prefix("power") == {"p": {}}
    assert c.sections_with_prefix("nothing") == {}


def test_core_options_in_server_are_read_when_their_section_is_absent(tmp_path: Path) -> None:
    # Moonraker reads a core component's options from [server] when its own section is absent.
    c = load(tmp_path, "[server]\nconfig_path: /cfg\ntrusted_clients: 10.0.0.0/8\n")
    assert c.file_manager.config_path == "/cfg"
    assert c.authorization.trusted_clients == ("10.0.0.0/8",)
    f = tmp_path / "moonraker.conf"
    assert c.warnings == (
        f"{f}:2: [server] config_path: belongs in [file_manager]; read from [server] for now,"
        " please move it",
        f"{f}:3: [server] trusted_clients: belongs in [authorization]; read from [server] for"
        " now, please move it",
    )
    message = error(tmp_path, "[server]\nforce_logins: perhaps\n")
    assert "moonraker.conf: [server] force_logins: expected a boolean" in message
    # with the section present, the stray option is ignored
    c = load(tmp_path, "[server]\nconfig_path: /cfg\n[file_manager]\n[authorization]\nport: 1\n")
    assert c.file_manager.config_path is None
    assert c.warnings == (
        f"{f}:2: [server] config_path: belongs in [file_manager], ignored",
        f"{f}:5: [authorization] port: belongs in [server], ignored",
    )


def test_trusted_clients_and_cors_domains_moonraker_refuses_are_dropped(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[authorization]\ntrusted_clients:\n  192.168.1.5/24\n  fe80::/10\n  ::1\n  pi4\n"
        "  bad_name!\n  10.0.0.300\ncors_domains:\n  http://*.local\n  https://my.*\n"
        "  http://x.lan/\n  http://a.b:*\n[authorization_x]\n",
    )
    assert c.authorization.trusted_clients == ("fe80::/10", "::1", "pi4")
    assert c.authorization.cors_domains == ("http://*.local", "http://a.b:*")
    f = tmp_path / "moonraker.conf"
    assert c.warnings == (
        f"{f}:14: [authorization_x]: section not supported by trioprint, ignored",
        f"{f}:2: [authorization] trusted_clients: '192.168.1.5/24' ignored:"
        " not a valid CIDR range (192.168.1.5/24 has host bits set)",
        f"{f}:2: [authorization] trusted_clients: 'bad_name!' ignored:"
        " not an IP address, a CIDR range or a host name",
        f"{f}:2: [authorization] trusted_clients: '10.0.0.300' ignored:"
        " not an IP address, a CIDR range or a host name",
        f"{f}:9: [authorization] cors_domains: 'https://my.*' ignored:"
        " wildcards are not allowed in the top-level domain",
        f"{f}:9: [authorization] cors_domains: 'http://x.lan/' ignored:"
        " an origin cannot end with '/'",
    )


def test_unsupported_features_warn(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[server]\nklippy_uds_address: {{ data_path }}/comms/klippy.sock\n"
        "[authorization]\ndefault_source: LDAP\n",
    )
    assert c.authorization.default_source == "ldap"
    f = tmp_path / "moonraker.conf"
    assert c.warnings == (
        f"{f}:4: [authorization] default_source: LDAP logins are not supported by trioprint",
        f"{f}:2: [server] klippy_uds_address: templates are not supported, the value is used as"
        " written",
    )


def test_typos_are_warned_with_their_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path, "# extra\n[file_manger]\nenable: 1\n\n[server]\n  Max_Upload_Size : 5\n", "x.cfg"
    )
    c = load(
        tmp_path,
        "[server]\nport: 7126\nmax_uplod_size: 10\n  continued\n[include x.cfg]\n"
        "[file_manager]\nlog_pth = /x\n",
    )
    main, extra = tmp_path / "moonraker.conf", tmp_path / "x.cfg"
    assert c.warnings == (
        f"{main}:3: [server] max_uplod_size: unknown option, ignored",
        f"{extra}:2: [file_manger]: section not supported by trioprint, ignored",
        f"{main}:7: [file_manager] log_pth: unknown option, ignored",
    )
    assert c.server.max_upload_size == 5  # read from the include, where it is known
    assert c.locations[("server", "max_upload_size")] == f"{extra}:6"
    # a component's own warning about a section is located the same way
    assert c.located("[file_manager] log_pth: bad") == f"{main}:7: [file_manager] log_pth: bad"
    assert c.located("[server] absent: x") == f"{main}:1: [server] absent: x"
    assert c.located("[nowhere] x: y") == "[nowhere] x: y"
    assert c.located("no section") == "no section"


# --- parsed() and overrides ------------------------------------------------------------------


def test_parsed_is_typed_and_json_serialisable(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        "[server]\nport: 80\n[authorization]\ncors_domains: a.lan, b.lan\n[spoolman]\nserver: x\n",
    )
    parsed = json.loads(json.dumps(c.parsed()))
    assert parsed["server"] == {
        "host": "127.0.0.1",
        "port": 80,
        "klippy_uds_address": None,
        "max_upload_size": 1024,
        "max_websocket_connections": 50,
        "enable_debug_logging": False,
    }
    assert parsed["authorization"]["cors_domains"] == ["a.lan", "b.lan"]
    assert parsed["spoolman"] == {"server": "x"}
    assert list(parsed)[:5] == ["server", "authorization", "file_manager", "database", "history"]


def test_cli_overrides_win(tmp_path: Path) -> None:
    c = load(tmp_path, "[server]\nport: 9000\nhost: 10.1.1.1\nmax_upload_size: 5\n")
    assert c.with_overrides() is c
    over = c.with_overrides(port=0, host="::1")
    assert (over.server.port, over.server.host, over.server.max_upload_size) == (0, "::1", 5)
    assert over.sections == c.sections
    assert c.with_overrides(host="all").server.host == "0.0.0.0"
    assert c.with_overrides(port=1).server.host == "10.1.1.1"
    with pytest.raises(ConfigError, match=r"^command line: --port: expected a port .*, got 70000$"):
        c.with_overrides(port=70000)
    with pytest.raises(ConfigError, match=r"^command line: --host: expected a host"):
        c.with_overrides(host="")


def test_classes_are_frozen_and_check_their_values() -> None:
    server = ServerConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        server.port = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="port"):
        ServerConfig(port=65536)
    assert FileManagerConfig(config_path="~").config_path == HOME


def test_module_is_pure() -> None:
    source = Path(__file__).parent.parent / "src" / "trioprint" / "config.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "logging", "trio_websocket", "hypercorn", "quart_trio"}


# --- anything at all -------------------------------------------------------------------------

fragments = st.sampled_from(
    [
        "[server]",
        "[authorization]",
        "[file_manager]",
        "[x y]",
        "[event_hook a]",
        "[include *.conf]",
        "[include sub/*.conf]",
        "[include]",
        "[]",
        "[{0}]",
        "[DEFAULT]",
        "  cont",
        "\tport: 1",
        "# comment",
        "  ; comment",
        "a: b ; c",
        "a: b \\# c",
        "novalue",
        "=v",
    ]
)
option_lines = st.builds(
    "{}{}{}{}".format,
    st.sampled_from(["", " ", "    "]),
    st.sampled_from(["port", "host", "force_logins", "cors_domains", "login_timeout", "x", "X"]),
    st.sampled_from([":", "=", " : "]),
    st.text(max_size=12),
)
documents = st.lists(st.one_of(fragments, option_lines, st.text(max_size=30)), max_size=14).map(
    "\n".join
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents, documents)
def test_arbitrary_text_loads_or_raises_config_error(tmp_path: Path, main: str, sub: str) -> None:
    path = tmp_path / "fuzz.conf"
    path.write_text(main, encoding="utf-8", errors="surrogatepass")
    write(tmp_path, sub, "sub/a.conf")
    try:
        config = load_config(path, tmp_path)
    except ConfigError as exc:
        message = str(exc)
        assert message
        assert "\n" not in message
        return
    json.dumps(config.parsed())
    assert all("\n" not in warning for warning in config.warnings)
    assert config.with_overrides(port=1).server.port == 1


def test_types_of_parsed_values(tmp_path: Path) -> None:
    def kinds(value: Any) -> set[type]:
        if isinstance(value, dict):
            return set().union(*(kinds(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(kinds(v) for v in value)) | {list}
        return {type(value)}

    parsed = load_config(DATA / "moonraker.conf", tmp_path).parsed()
    assert kinds(parsed) <= {str, int, float, bool, list, type(None)}
