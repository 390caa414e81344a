// The EICAR anti-malware test file: the string must open the file, as the
// EICAR standard defines it. Harmless by design; used to prove the gateway
// end to end.
rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-malware test file"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
        severity = "critical"
        score = 100
        action = "reject"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar at 0 and filesize <= 256
}
