"""Load a saved ExportedProgram (``.pt2``) only when no part of it can be unpickled.

``torch.export.load`` has several paths that run pickle: weights and constants flagged
``use_pickle`` go through ``torch.load(weights_only=False)``, ``opaque_obj_`` constants
through ``pickle.loads``, the sample inputs fall back to ``weights_only=False`` when the safe
load fails, archives in the pre-2.8 layout are read the same way, and ``data/aotinductor/``
entries are loaded as shared libraries. :func:`check_pt2` admits only the members a
torch-tensorrt ``exported_program`` save writes (graph JSON, raw tensor payloads,
``custom_obj_`` constants, which ``torch._C._pickle_load_obj`` restores with TorchScript's
restricted unpickler: only registered TorchBind classes such as TensorRT's engine) and sample
inputs that load with ``weights_only=True``; anything else is refused before torch sees it.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import torch

# Members a pt2 archive may hold, below its single root folder.
_ALLOWED = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/\w+\.json|extra/[^/]+"
    r"|data/weights/\w+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/\w+_constants_config\.json|data/constants/(tensor|custom_obj)_\w+"
    r"|data/sample_inputs/\w+\.pt)"
)


class UnsafeArchive(ValueError):
    """A saved program with content that would be unpickled (or native code) on load."""


def check_pt2(data: bytes) -> None:
    """Raise :class:`UnsafeArchive` unless ``data`` is a pt2 archive with no pickle path."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UnsafeArchive(f"not a pt2 archive: {exc}") from exc
    names = archive.namelist()
    if len(set(names)) != len(names):
        raise UnsafeArchive("duplicate archive members")
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        raise UnsafeArchive(f"not one root folder: {sorted(roots)[:3]}")
    root = roots.pop() + "/"
    members = {name[len(root) :]: name for name in names}
    for member in members:
        if not _ALLOWED.fullmatch(member):
            raise UnsafeArchive(f"member {member!r} is not allowed (pickled or native content)")
    if "archive_format" not in members or archive.read(members["archive_format"]) != b"pt2":
        raise UnsafeArchive("not a pt2 archive (legacy layout, read through pickle)")
    for member, name in members.items():
        if member.endswith(("_weights_config.json", "_constants_config.json")):
            _check_payload_config(member, archive.read(name))
        elif member.startswith("data/sample_inputs/"):
            try:  # torch retries a failed safe load with weights_only=False: fail it here first
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            except Exception as exc:
                raise UnsafeArchive(f"{member} does not load with weights_only=True") from exc


def load_exported_program(data: bytes) -> torch.export.ExportedProgram:
    """``torch.export.load`` of ``data`` after :func:`check_pt2` passed on the same bytes."""
    check_pt2(data)
    return torch.export.load(io.BytesIO(data))


def _check_payload_config(member: str, text: bytes) -> None:
    try:
        entries = json.loads(text)["config"]
        flags = [(fqn, e["path_name"], e.get("use_pickle", False)) for fqn, e in entries.items()]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnsafeArchive(f"{member} is malformed: {exc}") from exc
    for fqn, path_name, use_pickle in flags:
        if not isinstance(path_name, str) or not re.fullmatch(
            r"(weight|tensor|custom_obj)_\w+", path_name
        ):
            raise UnsafeArchive(f"{member}: {fqn!r} has payload {path_name!r}")
        # TorchBind objects (TensorRT's engine) are flagged use_pickle, but torch restores
        # them by their custom_obj_ name with TorchScript's unpickler, never with pickle.
        custom = path_name.startswith("custom_obj_") and member.endswith("_constants_config.json")
        if use_pickle is not False and not custom:
            raise UnsafeArchive(f"{member}: {fqn!r} is stored as a pickle")
