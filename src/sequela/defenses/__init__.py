"""The defenses, one module each (`base.DefenseContext` is what each is given); `registry` maps
names to them. This file imports nothing, so a module that needs one defense (the paradigms need
only FT and SFT) does not import every defense with it.
"""
