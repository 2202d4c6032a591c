"""The attacks, one module each (`base.Attack` is the interface); `registry` maps names to them.

This file imports nothing, so a module that needs only the interface (`attacks.base`) does not
import every attack with it.
"""
