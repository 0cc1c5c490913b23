"""JSON encoding for the unified types, errors included."""

from __future__ import annotations

import msgspec

from ._errors import SwitchyardError

__all__ = ["encode_json"]


def _enc_hook(obj: object) -> object:
    if isinstance(obj, SwitchyardError):
        return obj.to_dict()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_json(obj: object) -> bytes:
    """Encode responses, events, health snapshots and errors to JSON bytes."""
    return _encoder.encode(obj)
