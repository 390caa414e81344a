// PDF features that matter for mail. They match the raw file and the
// object streams portcullis decodes out of it (compressed objects, where
// these names hide from a raw scan); a decoded object stream starts with
// its "objnum offset" pairs rather than %PDF- (hence the second half of
// each condition).

rule PDF_Launch_Action
{
    meta:
        description = "PDF with a Launch action: opening it can start a program"
        severity = "high"
        score = 30
        action = "quarantine"
    strings:
        $a = /\/S\s*\/Launch\b/
        $b = "/Launch" ascii
    condition:
        (uint32(0) == 0x46445025 or (uint8(0) >= 0x31 and uint8(0) <= 0x39 and uint8(1) >= 0x20 and uint8(1) <= 0x39)) and ($a or $b)
}

rule PDF_JavaScript
{
    meta:
        description = "PDF with JavaScript"
        severity = "medium"
        score = 10
    strings:
        $a = "/JavaScript" ascii
        $b = /\/JS\s*[\(<\[0-9]/
    condition:
        (uint32(0) == 0x46445025 or (uint8(0) >= 0x31 and uint8(0) <= 0x39 and uint8(1) >= 0x20 and uint8(1) <= 0x39)) and any of them
}

rule PDF_OpenAction
{
    meta:
        description = "PDF that runs an action when opened (common and often harmless; see what it runs)"
        severity = "info"
        score = 1
    strings:
        $a = "/OpenAction" ascii
        $b = /\/AA\s*<</
    condition:
        (uint32(0) == 0x46445025 or (uint8(0) >= 0x31 and uint8(0) <= 0x39 and uint8(1) >= 0x20 and uint8(1) <= 0x39)) and any of them
}

rule PDF_EmbeddedFile
{
    meta:
        description = "PDF with an embedded file (extracted and inspected on its own)"
        severity = "low"
        score = 2
    strings:
        $a = "/EmbeddedFile" ascii
    condition:
        (uint32(0) == 0x46445025 or (uint8(0) >= 0x31 and uint8(0) <= 0x39 and uint8(1) >= 0x20 and uint8(1) <= 0x39)) and $a
}

rule PDF_URI
{
    meta:
        description = "PDF with link actions (URI)"
        severity = "info"
        score = 1
    strings:
        $a = /\/URI\s*\(/
    condition:
        (uint32(0) == 0x46445025 or (uint8(0) >= 0x31 and uint8(0) <= 0x39 and uint8(1) >= 0x20 and uint8(1) <= 0x39)) and $a
}
