"""The chunked format against tink and age: throughput, peak memory, random access.

Item 1 runs every subject in this process, interleaved, file to file in a
temporary directory on the same disk as the sources, whose pages are kept
warm.  Before each timed run the subject's output file is removed, the
dirty pages of the previous run flushed (``os.sync``) so no subject pays for
another's write-back, and the page cache primed with a scratch file of the
output's size (see ``_FileJobs.prepare``), all untimed.  Item 2 runs each job in a fresh
process and reads its peak resident set.  Item 3 reads 4 KiB at random
offsets of the large object item 2 encrypted.
"""

from __future__ import annotations

import filecmp
import gc
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
from _profile import Profile
from _subjects import ASSOCIATED_DATA, CONTEXT, PIECE, Keys, NullSink, make_file, remove
from _timing import (
    MiB,
    Result,
    Section,
    Target,
    interleaved,
    median,
    ratio_text,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.cipher_suite import CipherSuite, KeyedAead, ReadableBuffer
from strongroom.formats.chunked import ChunkedReader, decrypt_stream, encrypt_stream
from strongroom_plugins.ciphers.aesgcm import Aes256Gcm

PEAK = Path(__file__).with_name("_peak.py")
READ_SIZE = 4096
MEMORY_LIMIT = Target("at most", 64, "MiB")
VS_TINK = Target("at least", 1.5)
VS_AGE = Target("at least", 2.5)
RANDOM_ACCESS = Target("at least", 100)

#: Subject names, as the tables and the plot show them.
SR = "strongroom"
SR_MANIFEST = "strongroom + manifest"
TINK = "tink AES256_GCM_HKDF_1MB"
AGE = "age X25519 (pyrage)"
RAW = "raw AESGCM, in memory"
COPY = "file copy (no crypto)"
#: Extra single-thread stages, timed for the explanation only.
STAGE_READ = "read the source only"
STAGE_HASH = "SHA-256 in 1 MiB pieces, in memory"


@dataclass
class Throughput:
    """Item 1's medians in MB/s, by operation then subject."""

    encrypt: dict[str, float]
    decrypt: dict[str, float]
    stages: dict[str, float]


class _FileJobs:
    """Item 1's file-to-file jobs; every encryption writes ``out``, every decryption too."""

    def __init__(self, work: Path, source: Path, keys: Keys) -> None:
        self.source = source
        self.keys = keys
        self.out = work / "out"
        self.scratch = work / "scratch"
        self.ct = {
            name: work / f"{slug}.ct" for name, slug in ((SR, "sr"), (TINK, "tink"), (AGE, "age"))
        }

    def make_ciphertexts(self) -> None:
        """The ciphertexts the decryptions read, each checked to decrypt to the source."""
        self.sr_encrypt(self.ct[SR], manifest=False)
        self.tink_encrypt(self.ct[TINK])
        self.age_encrypt(self.ct[AGE])
        for name, decrypt in (
            (SR, self.sr_decrypt),
            (TINK, self.tink_decrypt),
            (AGE, self.age_decrypt),
        ):
            decrypt()
            if not filecmp.cmp(self.source, self.out, shallow=False):
                raise AssertionError(f"{name} did not decrypt to the source")

    def sr_encrypt(self, target: Path, *, manifest: bool) -> None:
        keys = self.keys
        with open(self.source, "rb") as src, open(target, "wb") as dst:
            encrypt_stream(src, dst, keys.suite, keys.key, 1, CONTEXT, manifest=manifest)

    def tink_encrypt(self, target: Path) -> None:
        with (
            open(self.source, "rb") as src,
            open(target, "wb") as dst,
            self.keys.tink_aead.new_encrypting_stream(dst, ASSOCIATED_DATA) as stream,
        ):
            shutil.copyfileobj(src, stream, PIECE)

    def age_encrypt(self, target: Path) -> None:
        recipient = self.keys.age_identity.to_public()
        pyrage.encrypt_file(str(self.source), str(target), [recipient])

    def sr_decrypt(self) -> None:
        with open(self.ct[SR], "rb") as src, open(self.out, "wb") as dst:
            decrypt_stream(src, dst, self.keys.key_for, CONTEXT)

    def tink_decrypt(self) -> None:
        with (
            open(self.ct[TINK], "rb") as src,
            open(self.out, "wb") as dst,
            self.keys.tink_aead.new_decrypting_stream(src, ASSOCIATED_DATA) as stream,
        ):
            shutil.copyfileobj(stream, dst, PIECE)

    def age_decrypt(self) -> None:
        pyrage.decrypt_file(str(self.ct[AGE]), str(self.out), [self.keys.age_identity])

    def copy(self) -> None:
        buffer = memoryview(bytearray(PIECE))
        with open(self.source, "rb", buffering=0) as src, open(self.out, "wb", buffering=0) as dst:
            while count := src.readinto(buffer):
                dst.write(buffer[:count])

    def read_only(self) -> None:
        buffer = memoryview(bytearray(PIECE))
        with open(self.source, "rb", buffering=0) as src:
            while src.readinto(buffer):
                pass

    def prepare(self, name: str = "") -> None:
        """Untimed, before each run: no output file, no dirty pages, page cache primed.

        On this kind of virtual machine memory freed for more than a moment goes
        back to the host, and writing a file into it runs two to three times
        slower.  Every subject that writes a file first writes and removes a
        scratch file of the same size, so each starts from the same state.
        """
        remove(self.out)
        os.sync()
        if RAW not in name and STAGE_READ not in name and STAGE_HASH not in name:
            buffer = memoryview(bytearray(PIECE))
            with open(self.scratch, "wb", buffering=0) as scratch:
                for _ in range(self.source.stat().st_size // PIECE + 16):
                    scratch.write(buffer)
            remove(self.scratch)

    def cleanup(self) -> None:
        for path in (self.out, *self.ct.values()):
            remove(path)


def throughput(work: Path, source: Path, keys: Keys, rounds: int) -> tuple[Section, Throughput]:
    """Item 1: chunked encrypt and decrypt, file to file, against tink, age and raw AES-GCM."""
    size = source.stat().st_size
    jobs = _FileJobs(work, source, keys)
    jobs.make_ciphertexts()
    plain = bytearray(size)
    with open(source, "rb") as handle:
        handle.readinto(plain)
    raw = _RawAead(keys.key, plain)

    out = jobs.out
    subjects: dict[tuple[str, str], Callable[[], object]] = {
        ("encrypt", SR): lambda: jobs.sr_encrypt(out, manifest=False),
        ("encrypt", SR_MANIFEST): lambda: jobs.sr_encrypt(out, manifest=True),
        ("encrypt", TINK): lambda: jobs.tink_encrypt(out),
        ("encrypt", AGE): lambda: jobs.age_encrypt(out),
        ("encrypt", RAW): raw.encrypt,
        ("decrypt", SR): jobs.sr_decrypt,
        ("decrypt", TINK): jobs.tink_decrypt,
        ("decrypt", AGE): jobs.age_decrypt,
        ("decrypt", RAW): raw.decrypt,
        ("stage", COPY): jobs.copy,
        ("stage", STAGE_READ): jobs.read_only,
        ("stage", STAGE_HASH): raw.hash,
    }
    names = {f"{op}/{name}": run for (op, name), run in subjects.items()}
    for name, run in names.items():  # warm up: code paths, allocator, page cache of the inputs
        jobs.prepare(name)
        run()
    samples = interleaved(names, rounds, prepare=jobs.prepare)
    del plain, raw
    gc.collect()

    mbps = {key: size / median(times) / 1e6 for key, times in samples.items()}
    result = Throughput(
        encrypt={name: mbps[f"encrypt/{name}"] for op, name in subjects if op == "encrypt"},
        decrypt={name: mbps[f"decrypt/{name}"] for op, name in subjects if op == "decrypt"},
        stages={name: mbps[f"stage/{name}"] for op, name in subjects if op == "stage"},
    )

    section = Section(f"1. Chunked encryption, file to file, {size // MiB} MiB")
    section.add(
        f"{size // MiB} MiB of random bytes, read from a file and written to a file in a",
        "temporary directory on the same disk; the source's pages are warm.  strongroom:",
        "`encrypt_stream` / `decrypt_stream`, aes-256-gcm, 1 MiB chunks, as `strongroom",
        "encrypt` runs them; `+ manifest` also hashes every chunk (`manifest=True`, opt-in,",
        "for a sync layer; reported, not a target: no reference computes such a digest).  tink:",
        "streaming AEAD `AES256_GCM_HKDF_1MB`, 1 MiB writes and reads through its Python",
        "streams.  age: `pyrage.encrypt_file` / `decrypt_file` to one X25519 recipient (file",
        "to file in Rust).  The ceiling: `AESGCM.encrypt_into` / `decrypt_into` over the same",
        "bytes in memory, 1 MiB at a time, one reused output buffer.  Before each timed run",
        "(untimed) the output file is removed, dirty pages are flushed, and a scratch file",
        "of the output's size is written and removed: on this virtual machine, memory freed",
        "for more than a moment returns to the host, and writing a file into it runs two to",
        "three times slower, whichever subject writes; priming gives every subject the same",
        "warm state.",
        f"Medians of {rounds} interleaved rounds, in MB/s of plaintext (10^6 bytes/s).",
        "",
    )
    rows = []
    for op, name in subjects:
        times = samples[f"{op}/{name}"]
        rows.append(
            [
                op,
                name,
                f"{mbps[f'{op}/{name}']:.0f}",
                f"{size / max(times) / 1e6:.0f}-{size / min(times) / 1e6:.0f}",
                f"{median(times):.3f}",
            ]
        )
    section.table(["operation", "subject", "MB/s", "range MB/s", "median s"], rows, "llrrr")

    results: list[Result] = []
    for op, mine in (("encrypt", SR), ("encrypt", SR_MANIFEST), ("decrypt", SR)):
        table = result.encrypt if op == "encrypt" else result.decrypt
        for reference, target in ((TINK, VS_TINK), (AGE, VS_AGE), (RAW, None)):
            value = table[mine] / table[reference]
            held_to = None if mine == SR_MANIFEST else target  # the opt-in manifest: reported
            results.append(
                Result("1", f"{op}: {mine} / {reference}", value, ratio_text(value), held_to)
            )
    section.result_rows(results)
    section.figures.update({f"encrypt|{k}": v for k, v in result.encrypt.items()})
    section.figures.update({f"decrypt|{k}": v for k, v in result.decrypt.items()})
    section.figures[f"stage|{COPY}"] = result.stages[COPY]

    section.add(*_notes(jobs, result, results))
    jobs.cleanup()
    return section, result


class _RawAead:
    """The ceiling: AES-256-GCM over bytes in memory, 1 MiB at a time, nothing else."""

    def __init__(self, key: bytes, plain: bytearray) -> None:
        self._aead = AESGCM(key)
        self._plain = memoryview(plain)
        self._size = len(plain)
        self._out = bytearray(PIECE + 16)
        self._nonces = [index.to_bytes(12, "big") for index in range(-(-self._size // PIECE))]
        sealed = bytearray(self._size + 16 * len(self._nonces))
        view = memoryview(sealed)
        for index, pos in enumerate(range(0, self._size, PIECE)):
            piece = self._plain[pos : pos + PIECE]
            start = pos + 16 * index
            self._aead.encrypt_into(
                self._nonces[index], piece, b"", view[start : start + len(piece) + 16]
            )
        self._sealed = view

    def encrypt(self) -> None:
        aead, plain, out, nonces = self._aead, self._plain, self._out, self._nonces
        for index, pos in enumerate(range(0, self._size, PIECE)):
            piece = plain[pos : pos + PIECE]
            aead.encrypt_into(nonces[index], piece, b"", memoryview(out)[: len(piece) + 16])

    def decrypt(self) -> None:
        aead, sealed, out, nonces = self._aead, self._sealed, self._out, self._nonces
        for index, pos in enumerate(range(0, self._size, PIECE)):
            length = min(PIECE, self._size - pos)
            start = pos + 16 * index
            aead.decrypt_into(
                nonces[index],
                sealed[start : start + length + 16],
                b"",
                memoryview(out)[:length],
            )

    def hash(self) -> None:
        plain = self._plain
        for pos in range(0, self._size, PIECE):
            hashlib.sha256(plain[pos : pos + PIECE]).digest()


@dataclass(frozen=True)
class _Bound:
    """What the stages allow one strongroom subject: threads' serial work, CPU on all cores."""

    stages: tuple[str, ...]
    threads: tuple[tuple[str, ...], ...]


#: Each strongroom subject's stages, and which of them share a thread.  The caller's
#: thread reads and encrypts (or decrypts); one worker writes; one hashes for the manifest.
_BOUNDS = {
    ("encrypt", SR): _Bound(("read", "encrypt", "write"), (("read", "encrypt"), ("write",))),
    ("encrypt", SR_MANIFEST): _Bound(
        ("read", "encrypt", "write", "hash"), (("read", "encrypt"), ("write",), ("hash",))
    ),
    ("decrypt", SR): _Bound(("read", "decrypt", "write"), (("read", "decrypt"), ("write",))),
}


def _notes(jobs: _FileJobs, result: Throughput, results: list[Result]) -> list[str]:
    """Where strongroom's time goes: stage costs, the best they allow, a profile, the misses."""
    work, source, keys = jobs.out.parent, jobs.source, jobs.keys
    size = source.stat().st_size
    cores = os.cpu_count() or 1

    def run_seconds(mbps: float) -> float:
        return size / 1e6 / mbps

    stages = result.stages
    seconds = {
        "read": run_seconds(stages[STAGE_READ]),
        "encrypt": run_seconds(result.encrypt[RAW]),
        "decrypt": run_seconds(result.decrypt[RAW]),
        "write": max(run_seconds(stages[COPY]) - run_seconds(stages[STAGE_READ]), 1e-9),
        "hash": run_seconds(stages[STAGE_HASH]),
    }
    names = {
        "read": "read the source (`readinto`, 1 MiB)",
        "encrypt": "AES-256-GCM `encrypt_into` (in memory)",
        "decrypt": "AES-256-GCM `decrypt_into` (in memory)",
        "write": "write the output (a file copy minus a read)",
        "hash": "SHA-256 of each chunk (the manifest)",
    }
    best: dict[tuple[str, str], float] = {}
    for key, bound in _BOUNDS.items():
        cpu = sum(seconds[stage] for stage in bound.stages)
        serial = max(sum(seconds[stage] for stage in thread) for thread in bound.threads)
        best[key] = size / 1e6 / max(cpu / cores, serial)

    lines = [
        "**Where the time goes.**  Each stage alone on one thread, the same bytes, medians",
        "of the same rounds:",
        "",
        "| stage | MB/s | s per run |",
        "|---|---:|---:|",
        *(f"| {names[k]} | {size / 1e6 / v:.0f} | {v:.3f} |" for k, v in seconds.items()),
        "",
        "strongroom runs a stream on up to three threads: the caller reads and encrypts",
        "(or decrypts), one worker writes, one hashes for the manifest; file I/O and hashlib",
        f"release the GIL.  On {cores} cores the best a run can do is the larger of its",
        "stages' CPU time spread over the cores and its busiest thread's time:",
        "",
        "| strongroom | stages | best MB/s | measured MB/s | measured / best |",
        "|---|---|---:|---:|---:|",
    ]
    for (op, name), bound in _BOUNDS.items():
        measured = (result.encrypt if op == "encrypt" else result.decrypt)[name]
        lines.append(
            f"| {op}: {name} | {' + '.join(bound.stages)} | {best[op, name]:.0f} | "
            f"{measured:.0f} | {measured / best[op, name]:.0%} |"
        )
    splits = _breakdown(jobs, 3)
    if any(
        (result.encrypt if op == "encrypt" else result.decrypt)[name] > best[op, name]
        for op, name in _BOUNDS
    ):
        lines += [
            "",
            "(Above 100%: the stage medians are themselves noisy, and AES-GCM alone ran",
            "slower in some rounds than inside a pipeline in others.)",
        ]
    lines += [
        "",
        "Inside strongroom's own runs (`manifest=False`), timed at the source and the AEAD",
        "(the caller's thread) and at the sink (the writer thread); medians of three runs:",
        "",
        "| strongroom | MB/s | wall s | caller: reading s | caller: AEAD s (alone) |"
        " caller: waiting s | writer: writing s (alone) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {op} | {size / 1e6 / split.wall:.0f} | {split.wall:.3f} | {split.read:.3f} | "
            f"{split.aead:.3f} ({seconds[op]:.3f}) | {split.waiting:.3f} | "
            f"{split.write:.3f} ({seconds['write']:.3f}) |"
            for op, split in splits.items()
        ),
        "",
        "The caller's waiting is the wall time outside its reads and AEAD calls: mostly",
        "waiting for the writer to free an output buffer.",
        "",
    ]
    profile = _profile_manifest(work, source, keys)
    lines += [
        "cProfile of one encryption with the manifest (the calling thread only: the",
        "workers' writing and hashing show up there as waits on their futures):",
        "",
        "| function | calls | own | cumulative |",
        "|---|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in profile.top_rows(6)),
        "",
    ]
    missed = [r for r in results if r.met is False]
    if not missed:
        return lines
    lines += [
        "**Targets not met.**  For each, the ratio strongroom would reach if it ran at the",
        "best its stages allow, against the reference as measured:",
        "",
        "| target | measured | at strongroom's best | verdict |",
        "|---|---:|---:|---|",
    ]
    for r in missed:
        op, rest = r.measure.split(": ", 1)
        mine, reference = rest.split(" / ")
        table = result.encrypt if op == "encrypt" else result.decrypt
        reachable = best[op, mine] / table[reference]
        assert r.target is not None
        measured = table[mine] / best[op, mine]
        verdict = (
            "out of reach here: even at its best the stages cap it below the target"
            if reachable < r.target.bound
            else f"missed by running at {measured:.0%} of its best"
        )
        lines.append(f"| {r.measure} {r.target} | {r.shown} | {reachable:.2f}x | {verdict} |")
    hash_vs_aes = "slower" if seconds["hash"] > seconds["encrypt"] else "faster"
    enc = splits["encrypt"]
    aead_factor = enc.aead / seconds["encrypt"]
    write_factor = enc.write / seconds["write"]
    lines += [
        "",
        "What this shows, and what would help:",
        "",
        f"- Inside the pipeline the AEAD took {aead_factor:.1f}x its time alone and writing"
        f" {write_factor:.1f}x.",
        *(
            [
                "  With two threads on two cores the stages slow each other down (shared",
                "  cores, caches, memory bandwidth, and whatever else runs: see the load",
                "  average).  tink and age run on one thread and lose less to this, so the",
                "  ratios move with the machine's load; read them from a quiet machine.",
            ]
            if max(aead_factor, write_factor) > 1.15
            else [
                "  The stages overlap without slowing each other much; single-run figures",
                "  still swing with the machine's load (see the ranges above).",
            ]
        ),
        f"- The caller reads the source itself ({enc.read:.3f} s a run) and waits"
        f" {enc.waiting:.3f} s for the",
        "  writer.  A read-ahead worker would take the reads off the caller's thread; more",
        "  output buffers (`Outbox` keeps 3) only help if the writer is not the bottleneck.",
        f"- Writing the output runs at {size / 1e6 / seconds['write']:.0f} MB/s alone, a cost"
        " every subject pays",
        "  alike: ratios between subjects shrink toward 1 wherever writing dominates, and",
        "  grow toward the in-memory ceiling where it is cheap.",
        f"- The manifest adds SHA-256 at {size / 1e6 / seconds['hash']:.0f} MB/s,"
        f" {hash_vs_aes} than AES-GCM",
        "  here; no reference computes such a digest.  That is why the manifest is opt-in:",
        "  only a sync layer needs it, and `manifest_of()` computes it later from the",
        "  ciphertext, or the sync layer hashes chunks as it reads them to upload.",
        "",
    ]
    return lines


class _TimedSource:
    """A source that adds up the time its reads take (on the caller's thread)."""

    def __init__(self, inner: io.BufferedReader) -> None:
        self._inner = inner
        self.seconds = 0.0

    def read(self, size: int = -1, /) -> bytes:
        start = time.perf_counter()
        data = self._inner.read(size)
        self.seconds += time.perf_counter() - start
        return data

    def readinto(self, buffer: memoryview, /) -> int:
        start = time.perf_counter()
        count = self._inner.readinto(buffer)
        self.seconds += time.perf_counter() - start
        return count


class _TimedSink:
    """A sink that adds up the time its writes take (on the writer thread)."""

    def __init__(self, inner: io.BufferedWriter) -> None:
        self._inner = inner
        self.seconds = 0.0

    def write(self, data: memoryview, /) -> int:
        start = time.perf_counter()
        count = self._inner.write(data)
        self.seconds += time.perf_counter() - start
        return count


class _TimedAead(KeyedAead):
    """Adds up the time of the in-place AEAD calls, which run on the caller's thread."""

    def __init__(self, inner: KeyedAead, clock: list[float]) -> None:
        self._inner = inner
        self._clock = clock

    def encrypt(self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes = b"") -> bytes:
        return self._inner.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes = b"") -> bytes:
        return self._inner.decrypt(nonce, ciphertext, aad)

    def encrypt_into(
        self, nonce: bytes, plaintext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        start = time.perf_counter()
        self._inner.encrypt_into(nonce, plaintext, aad, out)
        self._clock[0] += time.perf_counter() - start

    def decrypt_into(
        self, nonce: bytes, ciphertext: ReadableBuffer, aad: bytes, out: bytearray | memoryview
    ) -> None:
        start = time.perf_counter()
        self._inner.decrypt_into(nonce, ciphertext, aad, out)
        self._clock[0] += time.perf_counter() - start


class _TimedSuite(Aes256Gcm):
    """aes-256-gcm whose keyed AEADs time their in-place calls into ``clock``."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = [0.0]

    def keyed(self, key: bytes) -> KeyedAead:
        return _TimedAead(super().keyed(key), self.clock)

    def key_for(self, key: bytes) -> Callable[[int], tuple[CipherSuite, bytes]]:
        """A ``key_for`` that answers every version with this suite and ``key``."""
        return lambda _version: (self, key)


@dataclass(frozen=True)
class _Split:
    """Medians of where one strongroom run's time goes, by thread."""

    wall: float
    read: float
    aead: float
    write: float

    @property
    def waiting(self) -> float:
        """The caller's time outside reading and the AEAD: mostly waiting for the writer."""
        return max(self.wall - self.read - self.aead, 0.0)


def _breakdown(jobs: _FileJobs, runs: int) -> dict[str, _Split]:
    """Where strongroom's runs spend their time, timed at the source, the AEAD and the sink."""
    keys = jobs.keys
    splits = {}
    for op, path in (("encrypt", jobs.source), ("decrypt", jobs.ct[SR])):
        samples: list[tuple[float, float, float, float]] = []
        for _ in range(runs):
            jobs.prepare(op)
            suite = _TimedSuite()
            with open(path, "rb") as handle, open(jobs.out, "wb") as out:
                src, dst = _TimedSource(handle), _TimedSink(out)
                start = time.perf_counter()
                if op == "encrypt":
                    encrypt_stream(src, dst, suite, keys.key, 1, CONTEXT, manifest=False)
                else:
                    decrypt_stream(src, dst, suite.key_for(keys.key), CONTEXT)
                wall = time.perf_counter() - start
            samples.append((wall, src.seconds, suite.clock[0], dst.seconds))
        splits[op] = _Split(*(median([sample[i] for sample in samples]) for i in range(4)))
    remove(jobs.out)
    return splits


def _profile_manifest(work: Path, source: Path, keys: Keys) -> Profile:
    target = work / "profiled"

    def encrypt_with_manifest() -> None:
        with open(source, "rb") as src, open(target, "wb") as dst:
            encrypt_stream(src, dst, keys.suite, keys.key, 1, CONTEXT, manifest=True)

    remove(target)
    os.sync()
    profile = Profile.of(encrypt_with_manifest)
    remove(target)
    return profile


def _child(subject: str, keys: Keys, source: Path, target: Path) -> dict[str, float]:
    remove(target)
    os.sync()
    completed = subprocess.run(
        [sys.executable, str(PEAK), subject, str(source), str(target)],
        input=keys.for_child(),
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(completed.stdout)
    return figures


def memory(work: Path, source: Path, keys: Keys) -> tuple[Section, Path]:
    """Item 2: peak memory of encrypting and decrypting a large file, each in a fresh process.

    Returns the section and strongroom's ciphertext, which item 3 reads.
    """
    size = source.stat().st_size
    sr_ct = work / "large.sr.ct"
    jobs = [
        ("strongroom-encrypt", source, sr_ct, True),
        ("strongroom-decrypt", sr_ct, work / "large.sr.out", True),
        ("tink-encrypt", source, work / "large.tink.ct", False),
        ("tink-decrypt", work / "large.tink.ct", work / "large.tink.out", False),
        ("age-encrypt", source, work / "large.age.ct", False),
        ("age-decrypt", work / "large.age.ct", work / "large.age.out", False),
    ]
    rows: list[list[str]] = []
    results: list[Result] = []
    for subject, src, dst, targeted in jobs:
        figures = _child(subject, keys, src, dst)
        above = (figures["peak_kib"] - figures["baseline_kib"]) / 1024
        if subject.endswith("decrypt"):
            if dst.stat().st_size != size:
                raise AssertionError(f"{subject} wrote {dst.stat().st_size} bytes, not {size}")
            remove(dst)
            if not src.samefile(sr_ct):
                remove(src)
        rows.append(
            [
                subject.replace("-", " "),
                f"{figures['baseline_kib'] / 1024:.1f}",
                f"{figures['peak_kib'] / 1024:.1f}",
                f"{above:.1f}",
                f"{size / figures['seconds'] / 1e6:.0f}",
            ]
        )
        results.append(
            Result(
                "2",
                f"peak memory above baseline: {subject.replace('-', ' ')}",
                above,
                f"{above:.1f} MiB",
                MEMORY_LIMIT if targeted else None,
            )
        )
    section = Section(f"2. Peak memory, {size // MiB} MiB file to file")
    section.add(
        f"Each job streams a {size // MiB} MiB file to a file in a fresh interpreter",
        "(`bench/_peak.py`).  Baseline: `VmRSS` once everything is imported and keyed;",
        "peak: `VmHWM` when the job is done.  Page cache is not part of either.",
        "",
    )
    section.table(
        ["job", "baseline MiB", "peak MiB", "above baseline MiB", "MB/s (one cold run)"],
        rows,
        "lrrrr",
    )
    section.result_rows(results)
    return section, sr_ct


def random_access(ct: Path, plain: Path, keys: Keys, rounds: int, reads: int) -> Section:
    """Item 3: 4 KiB at a random offset through ``ChunkedReader`` against decrypting it all."""
    size = plain.stat().st_size
    rng = random.Random(20261127)
    offsets = [rng.randrange(0, size - READ_SIZE + 1) for _ in range(rounds * reads)]
    with open(plain, "rb") as expected, open(ct, "rb") as handle:
        reader = ChunkedReader(handle, keys.key_for, CONTEXT)
        chunks, chunk_size = reader.chunk_count, reader.chunk_size
        for offset in offsets[:reads]:
            expected.seek(offset)
            if reader.read_at(offset, READ_SIZE) != expected.read(READ_SIZE):
                raise AssertionError(f"read_at({offset}) differs from the plaintext")

    def whole() -> None:
        with open(ct, "rb") as handle:
            decrypt_stream(handle, NullSink(), keys.key_for, CONTEXT)

    cold = iter([offsets[i * reads : (i + 1) * reads] for i in range(rounds)])
    warm = iter([offsets[i * reads : (i + 1) * reads] for i in range(rounds)])

    def open_and_read() -> None:
        for offset in next(cold):
            with open(ct, "rb") as handle:
                ChunkedReader(handle, keys.key_for, CONTEXT).read_at(offset, READ_SIZE)

    with open(ct, "rb") as handle:
        reader = ChunkedReader(handle, keys.key_for, CONTEXT)

        def read_open() -> None:
            for offset in next(warm):
                reader.read_at(offset, READ_SIZE)

        whole()  # warm up
        samples = interleaved({"whole": whole, "open": open_and_read, "read": read_open}, rounds)
    whole_s = median(samples["whole"])
    open_s = median(samples["open"]) / reads
    read_s = median(samples["read"]) / reads
    section = Section(f"3. Random access: {READ_SIZE} bytes of a {size // MiB} MiB object")
    section.add(
        "The object item 2 encrypted (1 MiB chunks).  Whole: `decrypt_stream` into a sink",
        "that drops the bytes.  Random reads at seeded random offsets: opening the file and",
        "a `ChunkedReader` (which authenticates the last chunk up front) then `read_at`; and",
        f"`read_at` on a reader already open.  {reads} reads per round, {rounds} interleaved",
        "rounds, medians.",
        "",
    )
    section.table(
        ["subject", "ms"],
        [
            ["decrypt the whole object", f"{whole_s * 1e3:.1f}"],
            ["open + `read_at` (per read)", f"{open_s * 1e3:.3f}"],
            ["`read_at` on an open reader (per read)", f"{read_s * 1e3:.3f}"],
        ],
        "lr",
    )
    speedup = whole_s / open_s
    target = RANDOM_ACCESS
    section.result_rows(
        [
            Result(
                "3",
                "random 4 KiB read (open + read_at) vs whole decrypt, speed-up",
                speedup,
                ratio_text(speedup),
                target,
            ),
            Result(
                "3",
                "random 4 KiB read_at on an open reader vs whole decrypt, speed-up",
                whole_s / read_s,
                ratio_text(whole_s / read_s),
            ),
        ]
    )
    section.add(
        "A random read costs the same whatever the object's size: opening authenticates",
        "the last chunk, and `read_at` decrypts the one chunk holding the 4 KiB (two where",
        f"it straddles a boundary), {chunk_size // 1024} KiB each.  Whole decryption grows"
        f" with the object ({chunks:,}",
        f"chunks here), so the speed-up is about chunks / 2 = {chunks / 2:,.0f}x.",
        "",
    )
    if not target.met(speedup):
        section.add(
            f"**Not met**: this object has only {chunks:,} chunks, so about {chunks / 2:,.0f}x"
            " is the most",
            "a read of two whole chunks can gain.  Larger objects gain more; smaller chunks",
            "(`chunk_size`, the files store's `chunk_size` setting) raise it for small",
            "objects at the price of 16 bytes and one AEAD call per extra chunk.",
            "",
        )
    return section


def prepare_large(work: Path, size: int) -> Path:
    """The large source file of items 2 and 3, made once."""
    path = work / "large.plain"
    start = time.perf_counter()
    make_file(path, size)
    print(f"made {size // MiB} MiB in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return path
