"""The certificate table: read its WIN_CERTIFICATE entries, build a new one."""

from __future__ import annotations

from typing import BinaryIO, NamedTuple

from kmssign._internal.der import DerError, read
from kmssign._internal.pe.image import WIN_CERT, PEImage, align8, read_at
from kmssign.errors import PEFormatError

WIN_CERT_REVISION_1_0 = 0x0100
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_X509 = 0x0001
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
MAX_CERT_TABLE = 64 << 20  # read_certificates refuses larger tables (memory bound)


class WinCertificate(NamedTuple):
    """One WIN_CERTIFICATE entry of a PE file's certificate table."""

    revision: int
    cert_type: int
    data: bytes


def read_certificates(f: BinaryIO, image: PEImage) -> list[WinCertificate]:
    """The entries of the certificate table (empty without one)."""
    if not image.has_certificate_table:
        return []
    if image.cert_table_size > MAX_CERT_TABLE:
        raise PEFormatError(f"certificate table is too large ({image.cert_table_size} bytes)")
    table = read_at(
        f,
        image.cert_table_offset,
        image.cert_table_size,
        "certificate table extends past end of file",
    )
    entries: list[WinCertificate] = []
    pos = 0
    while pos < len(table):
        if len(table) - pos < WIN_CERT.size:
            raise PEFormatError(f"truncated WIN_CERTIFICATE header at table offset {pos}")
        length, revision, cert_type = WIN_CERT.unpack_from(table, pos)
        if length < WIN_CERT.size:
            raise PEFormatError(f"WIN_CERTIFICATE length {length} is too small")
        if pos + length > len(table):
            raise PEFormatError(f"WIN_CERTIFICATE length {length} runs past the certificate table")
        data = table[pos + WIN_CERT.size : pos + length]
        if cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            data = _trim_der_padding(data)
        entries.append(WinCertificate(revision, cert_type, data))
        pos += align8(length)
    return entries


def read_signature_entry(f: BinaryIO, image: PEImage) -> bytes:
    """The SignedData of the certificate table's one entry.

    Windows and osslsigncode take an Authenticode signature only from a table of exactly
    one WIN_CERTIFICATE of revision 2.0 and type PKCS_SIGNED_DATA; anything else is
    refused here (another entry beside it is not a nested signature).
    """
    entries = read_certificates(f, image)
    if len(entries) != 1:
        raise PEFormatError(
            f"the certificate table holds {len(entries)} entries; Authenticode allows one"
        )
    entry = entries[0]
    if entry.revision != WIN_CERT_REVISION_2_0:
        raise PEFormatError(
            f"WIN_CERTIFICATE revision 0x{entry.revision:04x} is not 2.0 (0x0200)"
        )
    if entry.cert_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
        raise PEFormatError(
            f"WIN_CERTIFICATE type 0x{entry.cert_type:04x} is not PKCS#7 SignedData (0x0002)"
        )
    return entry.data


def _trim_der_padding(data: bytes) -> bytes:
    """Drop the zero padding some signers count in dwLength; refuse anything else after the DER.

    Bytes hidden after the SignedData inside the entry are the CVE-2013-3900 trick. Data
    that is not DER at all is returned unchanged: the PKCS#7 layer rejects it.
    """
    if data[:1] != b"\x30":
        return data
    try:
        end = read(data).end
    except DerError:  # not DER: the PKCS#7 layer says what is wrong with it
        return data
    if end >= len(data):
        return data
    extra = data[end:]
    if len(extra) >= 8 or extra.count(0) != len(extra):
        raise PEFormatError(
            f"{len(extra)} bytes of data after the SignedData in its certificate entry"
        )
    return data[:end]


def win_certificate(signed_data: bytes) -> bytes:
    """One WIN_CERTIFICATE (revision 2.0, PKCS#7 SignedData) holding ``signed_data``.

    Padded to 8 with zeros, and dwLength counts the padding, as signtool and
    osslsigncode write it.
    """
    length = align8(WIN_CERT.size + len(signed_data))
    entry = WIN_CERT.pack(length, WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA)
    return entry + signed_data + bytes(length - WIN_CERT.size - len(signed_data))


def unwrap_table(data: bytes) -> bytes:
    """The SignedData of a single-entry certificate table given whole; other bytes unchanged."""
    if len(data) < WIN_CERT.size or data[0] == 0x30:
        return data
    length, revision, cert_type = WIN_CERT.unpack_from(data, 0)
    if (
        revision == WIN_CERT_REVISION_2_0
        and cert_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA
        and WIN_CERT.size < length <= len(data) <= align8(length)
    ):
        return _trim_der_padding(data[WIN_CERT.size : length])
    return data

