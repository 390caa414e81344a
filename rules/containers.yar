// Disk images are used to deliver payloads past Mark-of-the-Web: files
// inside a mounted ISO/IMG lose the "downloaded from the internet" flag.
rule Container_ISO_Image
{
    meta:
        description = "ISO 9660 or UDF disk image"
        severity = "medium"
        score = 10
    strings:
        $iso = "CD001"
        $udf1 = "BEA01"
        $udf2 = "NSR02"
        $udf3 = "NSR03"
    condition:
        $iso at 0x8001 or $iso at 0x8801 or $iso at 0x9001 or
        $udf1 at 0x8001 or $udf2 at 0x8001 or $udf3 at 0x8001
}
