"""``[simulator] printer_config``: the simulated printer runs a user's own printer.cfg."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioprint.app import make_simulator
from trioprint.config import load_config as load_trioprint_config
from trioprint.errors import StartupError
from trioprint.sim.config import PRINTER_CFG, ConfigError, load_config, read_printer_cfg
from trioprint.sim.gcode import GcodeError
from trioprint.sim.machine import SimMachine

from .test_sim_machine import START, drive

#: A user's printer.cfg: a bigger corexy with hotter heaters, cold extrusion allowed, faster
#: motion, hardware the simulator does not model, an include and a SAVE_CONFIG block.
USER_CFG = """\
[include hardware/*.cfg]

[mcu]
serial: /dev/serial/by-id/usb-Klipper_stm32f446xx_0123-if00

[printer]
kinematics: corexy
max_velocity: 500
max_accel: 7000
max_z_velocity: 20
max_z_accel: 350
square_corner_velocity: 8

[stepper_x]
step_pin: PF13
dir_pin: PF12
enable_pin: !PF14
microsteps: 32
rotation_distance: 40
endstop_pin: ^PG6
position_endstop: 0
position_max: 350
homing_speed: 80

[tmc2209 stepper_x]
uart_pin: PC4
run_current: 0.8

[stepper_y]
step_pin: PG0
dir_pin: PG1
enable_pin: !PF15
microsteps: 32
rotation_distance: 40
endstop_pin: ^PG9
position_endstop: 0
position_max: 350
homing_speed: 80

[stepper_z]
step_pin: PF11
dir_pin: PG3
enable_pin: !PG5
microsteps: 16
rotation_distance: 8
endstop_pin: ^PG10
position_endstop: 0.5
position_max: 340
position_min: -5

[bed_mesh]
mesh_min: 10, 10
mesh_max: 340, 340

[heater_bed]
heater_pin: PA1
sensor_type: Generic 3950
sensor_pin: PF3
control: pid
min_temp: 0
max_temp: 120

[fan]
pin: PA8

[gcode_macro PRINT_START]
gcode:
  G28
#*# <---------------------- SAVE_CONFIG ---------------------->
#*# DO NOT EDIT THIS BLOCK OR BELOW. The contents are auto-generated.
#*#
#*# [heater_bed]
#*# pid_kp = 60.1
#*# pid_ki = 2.5
#*# pid_kd = 700.0
#*#
#*# [extruder]
#*# pid_kp = 25.0
#*# pid_ki = 1.2
#*# pid_kd = 120.0
"""

EXTRUDER_CFG = """\
[extruder]
step_pin: PF9
dir_pin: PF10
enable_pin: !PG2
microsteps: 16
rotation_distance: 22.6
nozzle_diameter: 0.6
filament_diameter: 1.75
heater_pin: PA2
sensor_type: Generic 3950
sensor_pin: PF4
control: pid
min_temp: 0
max_temp: 300
min_extrude_temp: 0
pressure_advance: 0.04
"""


def write_user_cfg(folder: Path) -> Path:
    (folder / "hardware").mkdir(parents=True)
    (folder / "hardware" / "extruder.cfg").write_text(EXTRUDER_CFG)
    main = folder / "printer.cfg"
    main.write_text(USER_CFG)
    return main


def machine(tmp_path: Path, printer_cfg: str) -> SimMachine:
    m = SimMachine(tmp_path / "gcodes", now=START, printer_cfg=printer_cfg)
    m.finish_startup()
    return m


def run(m: SimMachine, script: str) -> None:
    drive(m, m.execute(script))


def test_a_users_printer_cfg_is_read_with_its_includes_and_saved_config(tmp_path: Path) -> None:
    text = read_printer_cfg(write_user_cfg(tmp_path / "config"))
    warnings: list[str] = []
    cfg = load_config(text, gcodes_dir=str(tmp_path / "gcodes"), user=True, warnings=warnings)
    assert cfg.section("printer")["kinematics"] == "corexy"
    assert cfg.section("printer")["max_accel"] == 7000.0
    assert cfg.section("stepper_x")["position_max"] == 350.0
    assert cfg.section("extruder")["max_temp"] == 300.0  # from the included file
    assert cfg.section("extruder")["min_extrude_temp"] == 0.0
    assert cfg.section("extruder")["pid_kp"] == 25.0  # from the SAVE_CONFIG block
    assert cfg.section("heater_bed")["pid_kd"] == 700.0
    # the printer prints from trioprint's folder, whatever the user's config said
    assert cfg.section("virtual_sdcard")["path"] == str(tmp_path / "gcodes")
    # every section is reported raw, as klippy's configfile does; what is not modelled is said
    assert "tmc2209 stepper_x" in cfg.config
    assert "bed_mesh" in cfg.config
    assert "tmc2209 stepper_x" not in cfg.settings
    assert any("[tmc2209 stepper_x]" in w for w in warnings)
    assert any("[bed_mesh]" in w for w in warnings)
    assert cfg.sections("gcode_macro ") == ["gcode_macro PRINT_START"]


def test_the_simulated_machine_follows_the_users_limits(tmp_path: Path) -> None:
    text = read_printer_cfg(write_user_cfg(tmp_path / "config"))
    m = machine(tmp_path, text)
    run(m, "G28")
    run(m, "G1 X340 Y340 Z300 F6000")  # beyond the built-in 250 x 210 x 200 machine
    assert m.query({"toolhead": ["axis_maximum"]})["toolhead"]["axis_maximum"][:3] == [
        350.0,
        350.0,
        340.0,
    ]
    run(m, "G1 X10 E5 F600")  # min_extrude_temp: 0, so a cold nozzle extrudes
    run(m, "M104 S290")  # max_temp 300
    assert m.query({"extruder": ["target"]})["extruder"]["target"] == 290.0
    with pytest.raises(GcodeError, match="Move out of range"):
        run(m, "G1 X360")
    toolhead = m.query({"toolhead": ["max_velocity", "max_accel"]})["toolhead"]
    assert (toolhead["max_velocity"], toolhead["max_accel"]) == (500.0, 7000.0)
    configfile = m.query({"configfile": ["settings"]})["configfile"]["settings"]
    assert configfile["extruder"]["pressure_advance"] == 0.04


def test_the_built_in_machine_keeps_its_limits(tmp_path: Path) -> None:
    m = machine(tmp_path, PRINTER_CFG)
    run(m, "G28")
    with pytest.raises(GcodeError, match="Move out of range"):
        run(m, "G1 X340")
    with pytest.raises(GcodeError, match="Extrude below minimum temp"):
        run(m, "G1 X10 E5 F600")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("kinematics: corexy", "kinematics: delta"), "kinematics: delta"),
        (lambda t: t.replace("[stepper_z]", "[stepper_q]"), "Section 'stepper_z' is required"),
        (lambda t: t.replace("max_accel: 7000", "max_accel: fast"), "max_accel"),
        (lambda t: t.replace("[include hardware/*.cfg]", "[include missing.cfg]"), "missing.cfg"),
    ],
)
def test_a_config_the_simulator_cannot_run_is_one_start_up_line(
    tmp_path: Path, edit: object, message: str
) -> None:
    main = write_user_cfg(tmp_path / "config")
    main.write_text(edit(main.read_text()))  # type: ignore[operator]
    (tmp_path / "config" / "trioprint.conf").write_text(f"[simulator]\nprinter_config: {main}\n")
    config = load_trioprint_config(tmp_path / "config" / "trioprint.conf", tmp_path)
    with pytest.raises(StartupError) as info:
        make_simulator(config)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("[simulator] printer_config: ")


def test_make_simulator_reads_printer_config_relative_to_the_config_file(tmp_path: Path) -> None:
    write_user_cfg(tmp_path / "config")
    conf = tmp_path / "config" / "trioprint.conf"
    conf.write_text("[simulator]\nprinter_config: printer.cfg\n")
    sim = make_simulator(load_trioprint_config(conf, tmp_path))
    assert sim is not None
    assert any("[bed_mesh]" in w for w in sim.config_warnings)
    m = sim._factory(tmp_path / "gcodes", 0.0)
    assert m.query({"toolhead": ["axis_maximum"]})["toolhead"]["axis_maximum"][0] == 350.0


def test_an_unreadable_printer_cfg_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.cfg"):
        read_printer_cfg(tmp_path / "nope.cfg")
