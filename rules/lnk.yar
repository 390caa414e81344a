// Windows shortcuts in mail are almost always a way to run a command line.
rule LNK_Runs_Shell
{
    meta:
        description = "Windows shortcut (.lnk) whose target or arguments start a shell or script host"
        severity = "high"
        score = 40
        action = "quarantine"
    strings:
        $c1 = "cmd.exe" ascii wide nocase
        $c2 = "powershell" ascii wide nocase
        $c3 = "mshta" ascii wide nocase
        $c4 = "wscript" ascii wide nocase
        $c5 = "cscript" ascii wide nocase
        $c6 = "rundll32" ascii wide nocase
        $c7 = "regsvr32" ascii wide nocase
    condition:
        uint32(0) == 0x0000004C and uint32(4) == 0x00021401 and any of ($c*)
}

rule LNK_File
{
    meta:
        description = "Windows shortcut (.lnk)"
        severity = "low"
        score = 5
    condition:
        uint32(0) == 0x0000004C and uint32(4) == 0x00021401
}
