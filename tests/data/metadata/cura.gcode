;FLAVOR:Marlin
;TIME:5123
;Filament used: 1.72658m
;Layer height: 0.2
;MINX:97.8
;MINY:97.8
;MINZ:0.2
;MAXX:137.2
;MAXY:137.2
;MAXZ:15
;TARGET_MACHINE.NAME:Creality Ender-3 Pro
;Generated with Cura_SteamEngine 5.6.0
;
; thumbnail begin 32x32 2776
; iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAH50lEQVR42o3VIYjc2h6A8ZGRERURyy
; NiLzTQFREVkRErNrALG+iII0ZErIhsYBcaMQeOGHHEiA20IjJiRcSIiC1soAs38CoiIyoaaOFGVERU
; RFzzvXnucc+KN8PAMCThl/nO/2T173/9i//9uCsbb/UKf+UQrE5kuHKJVn8QrzzE6ox/Hq9WIXp1Tr
; GKKFdXVKuYerWWzUrQrjbG8dMqk/PqjmWVw2rLygBYr/AsB986IbBcGVqnRJZHbJ0hLN8EWOdo64LC
; uqK0YiprTW0J2VgbWisxAdadnK2cxdqCpV4A2A6efYJvuwT2qQzt10T2GbHtI+y3JsC+QNuXFHZMaa
; +pbEFtb2RjJ7T2jQmwcznbWxZbgb17AeCc4DkuvnNK4LyWofOGyPGJnbcIJzABziXauaZw1pSOoHI2
; 1E4iG+eG1klNgLOVs6NYnB04mtXKtaXlvsJ2HRz3BNd18dxTfPc1gftG/vMCiRuSuudk7oXM3UuUe4
; 1231G4gtI1m3fue3r3lsH9wOhumVwlZ3fH4mpw90eA90panoPtneB4Lq53iud5+N4ZgeebAO+c1Lsg
; 865k7sUob432BIW3ofTM5p13R+/lDN6W0VNM3k7Onmbx9uAVR4DvSMs/wfZdHP8U13+N55/h+z6B/9
; YE+Bek/iWZH8vcX6N8gfY3FH5C6ZvNOz+n97cMvmL0d0y+lrO/Z/Hvwf90BAQn0gpc7OAUJ3iNG7zB
; C3z84C1BEJiA4JI0uCYL1jIPBCrYoIOEIrihDMzmXbClDxRDsGMMNFOwl3NwzxJ8hKA8AkJXWuEpdv
; gaJ3xjXCAMQ6LwnDi8QISXJOE1afiOLBQyD83mVfieOryVTfiBNtzShYo+3DGEmjHcG8evVtEf0oo8
; 7OgMJzLnPIzOiaKIOLpCRDFJtCaNBFm0kXlkNq+iO+ool020pY0UXbSjjzRDtGeMihcAsSet+Aw79n
; Fic87D+IIoviKOY0S8JokFabwhixOZx2bzKs6p461sYkUb7+hiTR/vGeJ7xvjTCwBxJi3hY4u3OMKc
; 81BcEomYWKwRQpCIDalIyMSNzIXZvBJbaqFkI3a0QtOJPb24ZxAfGUVpAoyNKAnxknP85IIguZRhck
; 2UrIkTgUjM5ip5j05uKZKcMtlSJYo62ckm0bSJ2XxKKjknDyxJDcnhBUB6jpde4KeXBOm1DNN3RKkg
; TjeI1Gyu0lt0+oEi3VKmiirdUadaNumeNr03AemDnNOaJT1A2rwAyC7wsiv8LCbI1jLMBFG2Ic4SRG
; Y2V1mOzrYUmaLMdlSZps72ssnuaTOz+ZTVcs4OLFkD2ecXAPklXh7j52uCXMgw3xDlCXF+g8jN5irf
; onNFke8oc02V76nze9nkH2lzs/mUH+ScNyz5I+TtcRGqUFrqHFtd4KhLXHWNp9b4ShCojbkRqfek6p
; ZM5TJXW5RSaLWjUJpSmc07VdGrBwZVM6oDk2rkrB5Z1BOo5yNAn0tLX2Dry+PD6RpXv8PTAl9vCHRi
; AvQtqf5Aprcy1wqld2itKfSeUpvNO/1Ar2sGfWDUDZN+lLN+YtFfQHdHQBFJq7jCLmKcYo1biOMzYo
; NfJATFjQkoctJiS1YomRc7VKHRxZ6iKCgLs3lX1PTFgaFoGIvPTEUr5+KZpeig+HoElFfSKmPsco1T
; Ctxyg1cm+OXNcatOTUC5JS0VWbmTealR5R5d3lOUnyhLs3lXHujLhqF8ZCxbpvJZzmXHUn6Fsj8Cql
; ha1Rq7EjiVOedh9Z6ouiOuckS1JakUabUjq7TMK7N5VVXU1YNsqpq2OtBVDX31yFA9MVbPL+yE9Vpa
; tcCuNzi1OedhfUtU58T1FlErknpHWmuyei/z2mxe1Q/UdS2b+kBbN3T1I339xFB/Yay7FwCNkFazwW
; 4SnMac87D5QNRsiRuFaHYkjT7uH3uy5l7mzUcT0NTUzUE2TUPbPNI1T/TNF4bmT8bm6wuAdiOtNsFu
; b3Bac87DdkvUKuJ2h2g1Sbsnbe/J2k8yb83mVXugbhvZtI+0bUvXPtO3HUP7lbHt/49nQfcer7vD73
; KCbivDThF1O+JOIzqzueqq4zQ9UHQ1ZXeg6hrq7lE23RNtZzafukHO3TeW7jt0P18A9Ld4fY7fbwl6
; JcN+R9Rr4n6P6M3mqn9A9zVFfzgu6oaqf6Tun2TTf6HtzeZT/03O/XeW/gf00wuA4QPesMUfFMGwk+
; GgiYY98XCPGMzmaqjRw4FiaCiHR6rhiXr4IpvhT9rBbD4N3+U8/GAZ/oLh1wuAcYs3KvxxRzBqGY57
; orEgHj8hRrO5Gg/osaEYP1OOLdX4TD12shm/0o5m82n8KedxYhl/wTgfF+GUSWu6w55ynGmLOym8aY
; c/aYJpb25EU0U6PZBNtcynA2pq0NMjxdRSTmbzbhqO//Q3huk74/STaZrkPP1imWaYfh8B85205hx7
; 3uLMCnfe4c0af94TzPcmYH4gnWuy+SDzuUHNj+j5iWJ+ppzN5t38jX7+zjD/ON7wxDT/kvM8s8y/YV
; 6OgCWX1rLFXhTOssNdNN6yx1/uCZaPJmCpSZcD2dLIfHlELU/o5QvF0lEuZvNu+U6//GBY/mJcfjEt
; s5yX3yzLAsvfRwBbaaGw2eGgcdnjUeDziYDSBHAgpSHjs8xpj2c+H8/qjmd8pcRs3vHz+OvEwC9G5u
; O33/J4/8f33/z39R9xcSUE0FOBMQAAAABJRU5ErkJggg==
; thumbnail end
;
M140 S60
M105
M190 S60
M104 S200
M105
M109 S200
M82 ;absolute extrusion mode
;Nozzle diameter = 0.4
;Filament type = PLA
;Filament name = Generic PLA
;Filament weight = [5.15]
; Ender 3 Custom Start G-code
G92 E0 ; Reset Extruder
G28 ; Home all axes
G1 Z2.0 F3000 ; Move Z Axis up little to prevent scratching of Heat Bed
G1 X0.1 Y20 Z0.3 F5000.0 ; Move to start position
G1 X0.1 Y200.0 Z0.3 F1500.0 E15 ; Draw the first line
G92 E0 ; Reset Extruder
G1 Z2.0 F3000 ; Move Z Axis up little to prevent scratching of Heat Bed
; End of custom start GCode
G92 E0
G92 E0
G1 F2700 E-5
;LAYER_COUNT:75
;LAYER:0
M107
G0 F6000 X99.8 Y99.8 Z0.2
;TYPE:SKIRT
G1 F2700 E0
G1 F1200 X135.2 Y99.8 E1.17759
G1 X135.2 Y135.2 E2.35518
;MESH:NONMESH
;TIME_ELAPSED:61.23
;LAYER:74
;TYPE:WALL-OUTER
G0 F6000 X100.2 Y100.2 Z15
G1 F1500 X134.8 Y100.2 E1722.30121
;TIME_ELAPSED:5123.51
G1 F2700 E1717.30121
M140 S0
M107
G91 ;Relative positioning
G1 E-2 F2700 ;Retract a bit
G1 E-2 Z0.2 F2400 ;Retract and raise Z
G1 X5 Y5 F3000 ;Wipe out
G1 Z10 ;Raise Z more
G90 ;Absolute positioning

G1 X0 Y235 ;Present print
M106 S0 ;Turn-off fan
M104 S0 ;Turn-off hotend
M140 S0 ;Turn-off bed

M84 X Y E ;Disable all steppers but Z

M82 ;absolute extrusion mode
M104 S0
;End of Gcode
;SETTING_3 {"global_quality": "[general]\\nversion = 4\\nname = Standard Quality #2\\nd
;SETTING_3 efinition = creality_ender3pro\\n\\n[metadata]\\ntype = quality_changes\\nqu
;SETTING_3 ality_type = standard\\nsetting_version = 22\\n\\n[values]\\nadhesion_type
;SETTING_3  = skirt\\n\\n", "extruder_quality": ["[general]\\nversion = 4\\nname = St
;SETTING_3 andard Quality #2\\ndefinition = creality_ender3pro\\n\\n[metadata]\\nint
;SETTING_3 ent_category = default\\nposition = 0\\nquality_type = standard\\nsetting_v
;SETTING_3 ersion = 22\\ntype = quality_changes\\n\\n[values]\\ninfill_sparse_densit
;SETTING_3 y = 20\\n\\n"]}
