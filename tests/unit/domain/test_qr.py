import socket
import struct
import zlib

import pytest
import segno

import domain.qr as qr_module
from domain.errors import InvalidRequest
from domain.qr import qr_png, qr_svg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
URI = "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=0.000001"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a socket (e.g. a third-party QR service) fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("QR generation must not touch the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_svg_signature_and_geometry(no_network: None) -> None:
    image = qr_svg(URI)
    assert image.startswith(b"<svg")
    assert image.rstrip().endswith(b"</svg>")
    side = segno.make_qr(URI, error="m").symbol_size(scale=4, border=2)[0]
    assert f'width="{side}" height="{side}"'.encode() in image
    image.decode("utf-8")


def test_svg_scale_and_border() -> None:
    code = segno.make_qr(URI, error="m")
    image = qr_svg(URI, scale=10, border=4)
    side = code.symbol_size(scale=10, border=4)[0]
    assert f'width="{side}"'.encode() in image


def test_png_signature_and_geometry(no_network: None) -> None:
    image = qr_png(URI)
    assert image.startswith(PNG_SIGNATURE)
    assert image.endswith(b"IEND\xaeB`\x82")
    side = segno.make_qr(URI, error="m").symbol_size(scale=4, border=2)[0]
    assert png_size(image) == (side, side)
    big = qr_png(URI, scale=8, border=0)
    assert png_size(big) == (segno.make_qr(URI, error="m").symbol_size(scale=8, border=0)[0],) * 2


def test_png_chunks_are_well_formed() -> None:
    image = qr_png(URI)
    pos = len(PNG_SIGNATURE)
    kinds = []
    while pos < len(image):
        (length,) = struct.unpack(">I", image[pos : pos + 4])
        kind = image[pos + 4 : pos + 8]
        body = image[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", image[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert b"IDAT" in kinds


def test_output_matches_local_segno_rendering() -> None:
    # The same modules segno computes locally: the image is not fetched from anywhere.
    code = segno.make_qr(URI, error="m")
    assert qr_svg(URI) == qr_svg(URI)
    matrix_rows = sum(1 for _ in code.matrix_iter(scale=1, border=0))
    assert matrix_rows == code.symbol_size(scale=1, border=0)[0]
    assert code.designator.endswith(("-M", "-Q", "-H"))  # never weaker than medium correction


def test_different_data_gives_different_images() -> None:
    other = URI.replace("0.000001", "0.000002")
    assert qr_svg(URI) != qr_svg(other)
    assert qr_png(URI) != qr_png(other)


def test_short_data_is_a_full_qr_code_not_micro() -> None:
    image = qr_png("1")
    # Version 1 is 21 modules; a Micro QR would be 11..17.
    assert png_size(image) == ((21 + 2 * 2) * 4,) * 2


def test_module_does_not_import_network_clients() -> None:
    source = open(qr_module.__file__, encoding="utf-8").read()
    for name in ("urllib", "http", "requests", "aiohttp", "socket"):
        assert f"import {name}" not in source


@pytest.mark.parametrize("data", ["", None, 123])
def test_bad_data(data: object) -> None:
    with pytest.raises(InvalidRequest):
        qr_svg(data)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        qr_png(data)  # type: ignore[arg-type]


def test_too_much_data() -> None:
    with pytest.raises(InvalidRequest):
        qr_svg("x" * 5000)


@pytest.mark.parametrize(("scale", "border"), [(0, 2), (65, 2), (4, -1), (4, 17), (True, 2), (2.5, 2)])
def test_bad_geometry(scale: object, border: object) -> None:
    with pytest.raises(InvalidRequest):
        qr_svg(URI, scale=scale, border=border)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        qr_png(URI, scale=scale, border=border)  # type: ignore[arg-type]
