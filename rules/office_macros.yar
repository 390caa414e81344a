// Office documents whose VBA runs by itself when the document is opened or
// closed: the OLE2 VBA project with an auto-exec entry point among the names
// that survive MS-OVBA compression in vbaProject.bin. (yara-x's vba module
// would read the decompressed source, but it does not build in 1.22.1.)
rule Office_VBA_AutoExec
{
    meta:
        description = "Office VBA macro that runs automatically (AutoOpen, Document_Open, Workbook_Open, ...)"
        severity = "high"
        score = 30
        action = "quarantine"
    strings:
        $ole = { D0 CF 11 E0 A1 B1 1A E1 }
        $vb_attr = "Attribute VB_" ascii
        $a1 = "AutoOpen" ascii nocase
        $a2 = "Auto_Open" ascii nocase
        $a3 = "Document_Open" ascii nocase
        $a4 = "Workbook_Open" ascii nocase
        $a5 = "AutoExec" ascii nocase
        $a6 = "AutoClose" ascii nocase
        $a7 = "Document_Close" ascii nocase
        $a8 = "Auto_Close" ascii nocase
    condition:
        $ole at 0 and $vb_attr and any of ($a*)
}

rule Office_VBA_AutoExec_Source
{
    meta:
        description = "VBA macro source (decompressed from an Office document) with a procedure that runs automatically"
        severity = "high"
        score = 30
        action = "quarantine"
    strings:
        $a1 = /Sub\s+Auto_?Open\b/ nocase
        $a2 = /Sub\s+(Document|Workbook)_(Open|Close|BeforeClose)\b/ nocase
        $a3 = /Sub\s+Auto_?(Exec|Close)\b/ nocase
    condition:
        uint32be(0) == 0x41747472 and any of them // "Attr": VBA source starts "Attribute VB_Name"
}

rule Office_Remote_Template
{
    meta:
        description = "OOXML relationship that loads a template, OLE object or frame from outside the document (remote template injection)"
        severity = "high"
        score = 30
        action = "quarantine"
    strings:
        // One <Relationship> element, attributes in either order.
        $type_first = /<Relationship[^>]{0,800}\/(attachedTemplate|oleObject|subDocument|frame)"[^>]{0,800}TargetMode="External"/
        $mode_first = /<Relationship[^>]{0,800}TargetMode="External"[^>]{0,800}\/(attachedTemplate|oleObject|subDocument|frame)"/
    condition:
        any of them
}
