"""strongroom's first-party backends.

Written only against strongroom's public API and registered through entry
points, exactly as a third-party plugin would be.
"""
