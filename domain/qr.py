"""QR codes made locally with segno.

Never ask a third-party QR service to draw these: the data is a deposit address (often
with the amount), and sending it out would leak who pays whom. segno is pure computation;
the image is written into an in-memory buffer, no file or network is touched.
"""

from __future__ import annotations

import io

import segno

from domain.errors import InvalidRequest

_MAX_SCALE = 64
_MAX_BORDER = 16
_MAX_DATA_LENGTH = 2048  # a payment URI is far shorter; this bounds the work per request


def _make(data: str) -> segno.QRCode:
    if not isinstance(data, str) or not data:
        raise InvalidRequest("QR data must be a non-empty string", field="data")
    if len(data) > _MAX_DATA_LENGTH:
        raise InvalidRequest(f"QR data is longer than {_MAX_DATA_LENGTH} characters", field="data")
    try:
        # Always a full QR code (never Micro QR, which many wallets cannot read);
        # medium error correction, boosted by segno when the version has room to spare.
        return segno.make_qr(data, error="m")
    except segno.DataOverflowError as exc:
        raise InvalidRequest("QR data does not fit in a QR code", field="data") from exc


def _check_geometry(scale: int, border: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= _MAX_SCALE:
        raise InvalidRequest(f"scale must be an integer from 1 to {_MAX_SCALE}", field="scale")
    if isinstance(border, bool) or not isinstance(border, int) or not 0 <= border <= _MAX_BORDER:
        raise InvalidRequest(f"border must be an integer from 0 to {_MAX_BORDER}", field="border")


def qr_svg(data: str, *, scale: int = 4, border: int = 2) -> bytes:
    """An SVG image (UTF-8 bytes starting with ``<svg``) of a QR code holding ``data``."""
    _check_geometry(scale, border)
    code = _make(data)
    buffer = io.BytesIO()
    code.save(buffer, kind="svg", scale=scale, border=border, xmldecl=False, encoding="utf-8")
    return buffer.getvalue()


def qr_png(data: str, *, scale: int = 4, border: int = 2) -> bytes:
    """A PNG image of a QR code holding ``data``."""
    _check_geometry(scale, border)
    code = _make(data)
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=scale, border=border)
    return buffer.getvalue()
