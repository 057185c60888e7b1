"""The key hierarchy: master key, data keysets, rotation and crypto-shredding."""

from strongroom.keys._data_keys import KeyLookup
from strongroom.keys._record import KeyState
from strongroom.keys.hierarchy import AccountKeys, DataKey, KeysetStatus, KeyStatus

__all__ = ["AccountKeys", "DataKey", "KeyLookup", "KeyState", "KeyStatus", "KeysetStatus"]
