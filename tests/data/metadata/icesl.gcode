; estimated_print_time_s : 	2718
; filament_used_mm : 	1834.6
; filament_used_g : 	5.47
; filament_name : 	Generic PLA
; filament_type : 	PLA
; layer_count : 	62
; print_height_mm : 	12.3
G21 ; set units to millimeters
M82 ; use absolute distances for extrusion
G90 ; use absolute coordinates
G28 ; home all axes
M190 S55 ; wait for bed temperature to be reached
M104 S210 ; set temperature
M109 S210 ; wait for temperature to be reached
G92 E0
G1 Z1.0 F3000 ; move z up little to prevent scratching of surface
G92 E0 ; reset extruder
M117 Printing ...

; <IceSL Dec 20 2023 17:10:40>
; add_brim : 	True
; add_raft : 	False
; bed_size_x_mm : 	220
; bed_size_y_mm : 	220
; bed_temp_degree_c : 	55
; chamber_temp_degree_c : 	0
; extruder_count : 	1
; extruder_temp_degree_c_0 : 	210
; filament_diameter_mm_0 : 	1.75
; infill_percentage_0 : 	20
; nozzle_diameter_mm_0 : 	0.4
; print_speed_mm_per_sec : 	60
; printer : 	CR10
; use_different_thickness_first_layer : 	True
; z_layer_height_first_layer_mm : 	0.3
; z_layer_height_mm : 	0.2
M106 S0
; <layer 0>
G1 Z0.300
; retract
G1 F1800 E-7.000000
G0 F7200 X109.200 Y106.600 Z0.300000
; prime
G1 F1800 E0.000000
G1 F1200 X108.776 Y106.639 E0.019826
G92 E0
; </layer>
; <layer 61>
G1 Z12.300
G0 F7200 X110.800 Y110.800 Z12.300000
G1 F2100 X110.800 Y109.200 E7.074503
G92 E0
; </layer>
G1 E-7.0 F1800 ; retract
M104 S0 ; turn off hotend
M140 S0 ; turn off bed
G28 X0 ; home X axis
M84 ; disable motors
