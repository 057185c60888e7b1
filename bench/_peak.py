"""Child process of the memory benchmark: one file-to-file job, its peak RSS as JSON.

Usage: ``python bench/_peak.py SUBJECT SOURCE TARGET`` with the keys as JSON
on standard input (``strongroom``: hex data key, ``tink``: JSON keyset,
``age``: X25519 identity).  Everything is imported and keyed before the
baseline is read, so the figure is what the job itself adds: the peak
resident set (``VmHWM``) minus the resident set (``VmRSS``) just before it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import tink  # type: ignore[import-untyped]
from pyrage import x25519
from tink import secret_key_access, streaming_aead

from strongroom.formats.chunked import decrypt_stream, encrypt_stream
from strongroom.formats.context import Context
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

CONTEXT = Context(account="bench", store="files", record="")
ASSOCIATED_DATA = b"bench"
PIECE = 1 << 20


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def job(subject: str, keys: dict[str, str], source: str, target: str) -> Callable[[], Any]:
    suite = Aes256Gcm()
    key = bytes.fromhex(keys["strongroom"])
    streaming_aead.register()
    handle = tink.json_proto_keyset_format.parse(keys["tink"], secret_key_access.TOKEN)
    tink_aead = handle.primitive(streaming_aead.StreamingAead)
    identity = x25519.Identity.from_str(keys["age"])

    def strongroom_encrypt() -> None:
        with open(source, "rb") as src, open(target, "wb") as dst:
            encrypt_stream(src, dst, suite, key, 1, CONTEXT, manifest=False)

    def strongroom_decrypt() -> None:
        with open(source, "rb") as src, open(target, "wb") as dst:
            decrypt_stream(src, dst, lambda _version: (suite, key), CONTEXT)

    def tink_encrypt() -> None:
        with (
            open(source, "rb") as src,
            open(target, "wb") as dst,
            tink_aead.new_encrypting_stream(dst, ASSOCIATED_DATA) as stream,
        ):
            shutil.copyfileobj(src, stream, PIECE)

    def tink_decrypt() -> None:
        with (
            open(source, "rb") as src,
            open(target, "wb") as dst,
            tink_aead.new_decrypting_stream(src, ASSOCIATED_DATA) as stream,
        ):
            shutil.copyfileobj(stream, dst, PIECE)

    def age_encrypt() -> None:
        pyrage.encrypt_file(source, target, [identity.to_public()])

    def age_decrypt() -> None:
        pyrage.decrypt_file(source, target, [identity])

    jobs: dict[str, Callable[[], Any]] = {
        "strongroom-encrypt": strongroom_encrypt,
        "strongroom-decrypt": strongroom_decrypt,
        "tink-encrypt": tink_encrypt,
        "tink-decrypt": tink_decrypt,
        "age-encrypt": age_encrypt,
        "age-decrypt": age_decrypt,
    }
    return jobs[subject]


def main() -> None:
    subject, source, target = sys.argv[1:4]
    run = job(subject, json.loads(sys.stdin.read()), source, target)
    baseline = status_kib("VmRSS")
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(
        json.dumps({"baseline_kib": baseline, "peak_kib": status_kib("VmHWM"), "seconds": seconds})
    )


if __name__ == "__main__":
    main()
