// Script droppers: JScript/VBScript/PowerShell that start shells or fetch
// and run code through Windows Script Host.
rule Script_Dropper_WSH
{
    meta:
        description = "Windows Script Host script that runs commands or downloads"
        severity = "high"
        score = 40
        action = "quarantine"
    strings:
        $o1 = "WScript.Shell" ascii nocase
        $o2 = "Shell.Application" ascii nocase
        $o3 = "ActiveXObject" ascii nocase
        $o4 = "CreateObject" ascii nocase
        $r1 = ".Run(" ascii nocase
        $r2 = ".Run " ascii nocase
        $r3 = "ShellExecute" ascii nocase
        $r4 = "powershell" ascii nocase
        $r5 = "XMLHTTP" ascii nocase
        $r6 = "ADODB.Stream" ascii nocase
    condition:
        filesize < 5MB and uint16(0) != 0x5A4D and
        any of ($o*) and 2 of ($r*)
}

rule Script_PowerShell_Download_Exec
{
    meta:
        description = "PowerShell that downloads and executes, or runs encoded commands"
        severity = "high"
        score = 40
        action = "quarantine"
    strings:
        $d1 = "DownloadString" ascii nocase
        $d2 = "DownloadFile" ascii nocase
        $d3 = "Invoke-WebRequest" ascii nocase
        $d4 = "Net.WebClient" ascii nocase
        $e1 = "Invoke-Expression" ascii nocase
        $e2 = "IEX" ascii
        $e3 = "Start-Process" ascii nocase
        $enc = /powershell(\.exe)?\s+(-\w+\s+)*-e(nc|ncodedcommand)?\s+[A-Za-z0-9+\/=]{16,}/ nocase
    condition:
        filesize < 5MB and uint16(0) != 0x5A4D and
        ((any of ($d*) and any of ($e*)) or $enc)
}
