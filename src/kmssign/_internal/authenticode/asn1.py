"""ASN.1 structures and object identifiers of Authenticode (asn1crypto specs, no logic).

Microsoft's Authenticode PE specification defines these; they are registered into
asn1crypto's CMS maps so that SignedData with SpcIndirectDataContent parses and dumps
like any other PKCS#7 content.
"""

from __future__ import annotations

from asn1crypto import algos, cms, core

OID_SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
OID_SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
OID_SPC_SIP_INFO = "1.3.6.1.4.1.311.2.1.30"  # SpcSipInfo: files a SIP hashes (MSI)
OID_SPC_SP_OPUS_INFO = "1.3.6.1.4.1.311.2.1.12"
OID_SPC_STATEMENT_TYPE = "1.3.6.1.4.1.311.2.1.11"
OID_SPC_INDIVIDUAL_SP_KEY_PURPOSE = "1.3.6.1.4.1.311.2.1.21"
OID_SPC_NESTED_SIGNATURE = "1.3.6.1.4.1.311.2.4.1"
OID_MS_RFC3161_TIMESTAMP = "1.3.6.1.4.1.311.3.3.1"

OBSOLETE_FILE_LINK = "<<<Obsolete>>>"


class SpcString(core.Choice):  # type: ignore[misc]
    _alternatives = [
        ("unicode", core.BMPString, {"implicit": 0}),
        ("ascii", core.IA5String, {"implicit": 1}),
    ]


class SpcSerializedObject(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("class_id", core.OctetString),
        ("serialized_data", core.OctetString),
    ]


class SpcLink(core.Choice):  # type: ignore[misc]
    _alternatives = [
        ("url", core.IA5String, {"implicit": 0}),
        ("moniker", SpcSerializedObject, {"implicit": 1}),
        ("file", SpcString, {"explicit": 2}),
    ]


class SpcPeImageFlags(core.BitString):  # type: ignore[misc]
    _map = {0: "include_resources", 1: "include_debug_info", 2: "include_import_address_table"}


class SpcPeImageData(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("flags", SpcPeImageFlags),
        ("file", SpcLink, {"explicit": 0, "optional": True}),
    ]


class SpcAttributeType(core.ObjectIdentifier):  # type: ignore[misc]
    _map = {OID_SPC_PE_IMAGE_DATA: "spc_pe_image_data"}


class SpcAttributeTypeAndOptionalValue(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("type", SpcAttributeType),
        ("value", core.Any, {"optional": True}),
    ]
    _oid_pair = ("type", "value")
    _oid_specs = {"spc_pe_image_data": SpcPeImageData}


class SpcIndirectDataContent(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("data", SpcAttributeTypeAndOptionalValue),
        ("message_digest", algos.DigestInfo),
    ]


class SpcSpOpusInfo(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("program_name", SpcString, {"explicit": 0, "optional": True}),
        ("more_info", SpcLink, {"explicit": 1, "optional": True}),
    ]


class SpcStatementType(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.ObjectIdentifier


class SetOfSpcSpOpusInfo(core.SetOf):  # type: ignore[misc]
    _child_spec = SpcSpOpusInfo


class SetOfSpcStatementType(core.SetOf):  # type: ignore[misc]
    _child_spec = SpcStatementType


class SetOfContentInfo(core.SetOf):  # type: ignore[misc]
    _child_spec = cms.ContentInfo


def _name_oid(cls: type[core.ObjectIdentifier], oid: str, name: str) -> None:
    cls._map[oid] = name
    # asn1crypto builds the name -> OID map on first use; extend it when it exists already.
    if cls._reverse_map is not None:
        cls._reverse_map[name] = oid


def _register() -> None:
    """Teach asn1crypto's CMS module the Authenticode content and attribute types."""
    _name_oid(cms.ContentType, OID_SPC_INDIRECT_DATA, "spc_indirect_data")
    cms.ContentInfo._oid_specs["spc_indirect_data"] = SpcIndirectDataContent
    _name_oid(cms.CMSAttributeType, OID_SPC_SP_OPUS_INFO, "spc_sp_opus_info")
    _name_oid(cms.CMSAttributeType, OID_SPC_STATEMENT_TYPE, "spc_statement_type")
    _name_oid(cms.CMSAttributeType, OID_SPC_NESTED_SIGNATURE, "spc_nested_signature")
    _name_oid(cms.CMSAttributeType, OID_MS_RFC3161_TIMESTAMP, "ms_rfc3161_timestamp")
    cms.CMSAttribute._oid_specs["spc_sp_opus_info"] = SetOfSpcSpOpusInfo
    cms.CMSAttribute._oid_specs["spc_statement_type"] = SetOfSpcStatementType
    cms.CMSAttribute._oid_specs["spc_nested_signature"] = SetOfContentInfo
    cms.CMSAttribute._oid_specs["ms_rfc3161_timestamp"] = SetOfContentInfo
    # asn1crypto builds a class's name -> OID map on its first use by name, and a thread
    # that uses the class while another builds it finds the name missing (ValueError):
    # signing on several threads did. Build the maps of the classes signing and
    # timestamping name OIDs in now, at import, on one thread. asn1crypto's tsp module
    # adds its names (tst_info, signing_certificate_v2) to two of them when imported: it is
    # imported first, or a map built before would never know them.
    import asn1crypto.tsp  # noqa: F401

    for cls in (cms.ContentType, cms.CMSAttributeType, algos.DigestAlgorithmId,
                algos.SignedDigestAlgorithmId):
        cls.unmap(next(iter(cls._map.values())))


_register()
