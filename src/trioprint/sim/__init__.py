"""A simulated Klipper printer: a pure model of klippy (:mod:`.machine`) and its G-code."""
