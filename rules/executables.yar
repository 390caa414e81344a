// Native executables anywhere in a message. Ordinary mail almost never
// carries them; when it does, a person should look before it is delivered.

rule Executable_PE
{
    meta:
        description = "Windows PE executable (exe, dll, scr, ...)"
        severity = "high"
        score = 30
        action = "quarantine"
    condition:
        uint16(0) == 0x5A4D and filesize > 0x40 and
        uint32(0x3C) < filesize - 4 and uint32(uint32(0x3C)) == 0x00004550
}

rule Executable_ELF
{
    meta:
        description = "Linux/Unix ELF executable"
        severity = "high"
        score = 30
        action = "quarantine"
    condition:
        uint32(0) == 0x464C457F
}

rule Executable_MachO
{
    meta:
        description = "macOS Mach-O executable"
        severity = "high"
        score = 30
        action = "quarantine"
    condition:
        uint32(0) == 0xFEEDFACE or uint32(0) == 0xFEEDFACF or
        uint32(0) == 0xCEFAEDFE or uint32(0) == 0xCFFAEDFE
}
