; KISSlicer - PRO
; Windows
; version 2 a 2.0.6 Win64
; Built: Jul 22 2020, 08:28:07
; Running on 8 cores
;
; Saved: 2024-03-01 11:02:45
; 'bracket.gcode'
;
; Anti-shrink gain x=1.000000, y=1.000000, z=1.000000
;
; *** Printer Settings ***
;
; printer_name = Prusa i3 MK3S
; profile_date = 2024-03-01 10:58:12
; bed_STL_filename =
; extension = gcode
; cost_per_hour = 0
; g_code_prefix = 3B205B6D6D5D206D6F64650A4732310A
; > Decoded
; >   ; [mm] mode
; >   G21
; num_extruders = 1
; firmware_type = 2
; bed_size_x_mm = 250
; bed_size_y_mm = 210
; bed_size_z_mm = 210
; travel_speed_mm_per_s = 150
; ext_1_mat_name = Generic PLA
; nozzle_dia_1 = 0.4
;
; *** Material Settings for Extruder 1 ***
;
; material_name = Generic PLA
; profile_date = 2024-03-01 10:58:12
; temperature_C = 210
; keep_warm_C = 180
; first_layer_C = 215
; bed_C = 60
; chamber_C = 0
; fiber_dia_mm = 1.75
;
; *** Style Settings ***
;
; style_name = 0.25mm draft
; profile_date = 2024-03-01 10:58:12
; layer_thickness_mm = 0.25
; max_layer_thickness_mm = 0
; first_layer_thickness_mm = 0
; extrusion_width_mm = 0.45
; num_loops = 3
;
; *** Actual Slicing Settings As Used ***
;
; layer_thickness_mm = 0.25
; max_layer_thickness_mm = 0
; first_layer_thickness_mm = 0
;
; *** G-code Prefix ***
;
; [mm] mode
G21
; absolute mode
G90
; absolute Extruder mode
M82
; home the axes
G28
; heat the bed
M140 S60
;
; *** Main G-code ***
;
; Reset extruder pos
G92 E0
; BEGIN_LAYER_OBJECT z=0.250 z_thickness=0.250
;
; *** Selecting and Warming Extruder 1 to 215 C ***
; 5D-style
T0
M104 S215
G1 X110.033 Y100.230 F6000
M109 S215
;
; 'Perimeter Path', 0.0 [feed mm/s], 20.0 [head mm/s]
G1 X110.033 Y100.23 Z0.25 E0 F9000
G1 X139.967 Y100.23 E1.00153 F1200
; END_LAYER_OBJECT z=0.250
; Reset extruder pos
G92 E0
; BEGIN_LAYER_OBJECT z=12.500 z_thickness=0.250
;
; 'Perimeter Path', 0.0 [feed mm/s], 20.0 [head mm/s]
G1 X110.033 Y100.23 Z12.5 E0 F9000
G1 X139.967 Y100.23 E1.00153 F1200
;
; Post-layer lift
G1 X139.967 Y100.23 Z13 E1.00153 F300
; END_LAYER_OBJECT z=12.500
;
; *** Cooling Extruder 1 to 0 C and Retiring ***
M104 S0
;
; fan off
M107
; *** G-code Postfix ***
;
; turn off the bed & chamber
M140 S0
;
;
;
; Calculated-during-export Build Time: 84.55 minutes
; Estimated-in-GUI Build Time:         88.01 minutes
; Estimated-in-GUI Build Cost:         $0.00
;
; Filament used per extruder:
;    Ext #1  =  2345.67 mm  (5.642 cm^3)
;
; Total estimated (pre-cool) minutes: 81.93
