"""Read an offline W&B run file (`offline-run-*/run-<id>.wandb`) without wandb's own reader.

The file is W&B's header (":W&B" + magic + version, 7 bytes) followed by LevelDB-log framed records
(32 KiB blocks; each chunk: crc32, length, type FULL/FIRST/MIDDLE/LAST) holding protobuf `Record`s.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, out, buf = 7, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and n == 0:
            pos += left - 7
            continue
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):  # FULL or LAST
            r = pb.Record()
            r.ParseFromString(buf)
            out.append(r)
            buf = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


class OfflineRun:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        (self.file,) = self.folder.glob("run-*.wandb")
        self.records = records(self.file)

    def _of(self, kind: str) -> list:
        return [getattr(r, kind) for r in self.records if r.WhichOneof("record_type") == kind]

    @property
    def run(self):
        return self._of("run")[0]

    @property
    def exit_code(self) -> int | None:
        ex = self._of("exit")
        return ex[-1].exit_code if ex else None

    @property
    def summary(self) -> dict:
        out = {}
        for s in self._of("summary"):
            for item in s.update:
                out[_key(item)] = json.loads(item.value_json)
        return out

    @property
    def history(self) -> list[dict]:
        return [{_key(i): json.loads(i.value_json) for i in h.item} for h in self._of("history")]

    @property
    def metrics(self) -> list:
        return self._of("metric")


def offline_runs(run_dir: Path, timeout: float = 20.0) -> list[OfflineRun]:
    """The run folder's offline W&B runs, oldest first. W&B's service writes the file asynchronously after
    `finish()` returns, so wait (up to `timeout` s) until every run has its exit record."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        runs = [OfflineRun(p) for p in sorted(Path(run_dir).glob("wandb/offline-run-*")) if list(p.glob("run-*.wandb"))]
        if all(r.exit_code is not None for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)
