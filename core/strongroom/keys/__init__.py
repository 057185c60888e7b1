"""The key hierarchy: master key, data keysets, rotation and crypto-shredding."""

from strongroom.keys._record import KeyState
from strongroom.keys.hierarchy import AccountKeys, DataKey, KeysetStatus, KeyStatus

__all__ = ["AccountKeys", "DataKey", "KeyState", "KeyStatus", "KeysetStatus"]
