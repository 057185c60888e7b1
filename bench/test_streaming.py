"""Chunked file-to-file streams against tink's streaming AEAD and age; peak memory of each.

Timed here; before each round (untimed) the output is removed and dirty pages flushed, so no
subject pays for another's write-back.  Peak memory: a fresh ``python -m bench.test_streaming``
per job (the job as JSON on stdin) imports and keys everything, then reports the job's peak
resident set (``VmHWM``) and the resident set (``VmRSS``) just before it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest
import tink  # type: ignore[import-untyped]
from pytest_benchmark.fixture import BenchmarkFixture
from tink import secret_key_access, streaming_aead

from bench import MiB, Sizes, make_file, pedantic
from strongroom.formats.chunked import decrypt_stream, encrypt_stream
from strongroom.formats.context import Context
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

CONTEXT = Context(account="bench", store="files", record="")
AD = b"bench"  # tink's associated data; age has none
SUBJECTS = ("strongroom", "tink", "age")
ROOT, SCRIPT = Path(__file__).parents[1], [sys.executable, "-m", "bench.test_streaming"]
Keys = dict[str, str]  # subject: key as a string, so a child process can have it too
Streams = tuple[Keys, Path, Sizes]


def stream_job(keys: Keys, subject: str, op: str) -> Callable[[Path, Path], None]:
    """``job(source, target)``: encrypt or decrypt one file into another with ``subject``."""
    encrypt = op == "encrypt"
    if subject == "age":
        identity = pyrage.x25519.Identity.from_str(keys["age"])
        if encrypt:
            return lambda src, dst: pyrage.encrypt_file(str(src), str(dst), [identity.to_public()])
        return lambda src, dst: pyrage.decrypt_file(str(src), str(dst), [identity])
    suite, key = Aes256Gcm(), bytes.fromhex(keys["strongroom"])
    if subject == "tink":
        streaming_aead.register()
        handle = tink.json_proto_keyset_format.parse(keys["tink"], secret_key_access.TOKEN)
        tink_streams = handle.primitive(streaming_aead.StreamingAead)

    def job(src: Path, dst: Path) -> None:
        with open(src, "rb") as source, open(dst, "wb") as sink:
            if subject == "strongroom" and encrypt:
                encrypt_stream(source, sink, suite, key, 1, CONTEXT, manifest=False)
            elif subject == "strongroom":
                decrypt_stream(source, sink, lambda _version: (suite, key), CONTEXT)
            elif encrypt:
                with tink_streams.new_encrypting_stream(sink, AD) as stream:
                    shutil.copyfileobj(source, stream, MiB)
            else:
                with tink_streams.new_decrypting_stream(source, AD) as stream:
                    shutil.copyfileobj(stream, sink, MiB)

    return job


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory, sizes: Sizes) -> Streams:
    """Keys, the plain file, and each subject's ciphertext of it, checked to decrypt back."""
    streaming_aead.register()
    handle = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    keys = {
        "strongroom": os.urandom(32).hex(),
        "tink": tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN),
        "age": str(pyrage.x25519.Identity.generate()),
    }
    plain = make_file(tmp_path_factory.mktemp("streams") / "plain", sizes.stream)
    check = plain.with_name("check")
    for subject in SUBJECTS:
        stream_job(keys, subject, "encrypt")(plain, plain.with_name(f"{subject}.ct"))
        stream_job(keys, subject, "decrypt")(plain.with_name(f"{subject}.ct"), check)
        assert check.read_bytes() == plain.read_bytes()
    check.unlink()
    return keys, plain, sizes


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("op", ["encrypt", "decrypt"])
@pytest.mark.parametrize("measure", ["time", "peak memory"])
def test_stream(
    benchmark: BenchmarkFixture, streams: Streams, op: str, subject: str, measure: str
) -> None:
    keys, plain, sizes = streams
    source = plain if op == "encrypt" else plain.with_name(f"{subject}.ct")
    target = plain.with_name(f"out-{subject}-{op}")
    if measure == "time":

        def fresh() -> None:
            target.unlink(missing_ok=True)
            os.sync()

        benchmark.group = f"stream: {op} file to file"
        benchmark.extra_info.update(subject=subject, bytes=sizes.stream)
        job = stream_job(keys, subject, op)
        pedantic(benchmark, job, source, target, setup=fresh, rounds=sizes.stream_rounds)
    else:
        spec = json.dumps([keys, subject, op, str(source), str(target)])
        options = {"input": spec, "text": True, "cwd": ROOT}
        benchmark.group = "stream: peak memory"
        figures = json.loads(pedantic(benchmark, subprocess.check_output, SCRIPT, kwargs=options))
        benchmark.extra_info.update(subject=f"{subject} {op}", **figures)
    target.unlink()


def status_mib() -> dict[str, float]:  # this process's memory figures, in MiB
    lines = [line.split() for line in Path("/proc/self/status").read_text().splitlines()]
    return {words[0][:-1]: int(words[1]) / 1024 for words in lines if words[-1] == "kB"}


if __name__ == "__main__":
    keys, subject, op, source, target = json.loads(sys.stdin.read())
    job = stream_job(keys, subject, op)
    baseline = status_mib()["VmRSS"]
    job(Path(source), Path(target))
    print(json.dumps({"baseline_mib": baseline, "peak_mib": status_mib()["VmHWM"]}))
