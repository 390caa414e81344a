// HTML smuggling: the page assembles a file in the browser (base64 decoded
// into a Blob) and hands it to the user as a download, so the payload never
// crosses the gateway as an attachment.
rule HTML_Smuggling_Blob
{
    meta:
        description = "HTML that builds a file from script data and offers it as a download"
        severity = "high"
        score = 30
        action = "quarantine"
    strings:
        $html1 = "<html" ascii nocase
        $html2 = "<script" ascii nocase
        $dec1 = "atob(" ascii
        $dec2 = "base64" ascii nocase
        $dec3 = "fromCharCode" ascii
        $blob = "new Blob(" ascii
        $url = "createObjectURL" ascii
        $msave = "msSaveOrOpenBlob" ascii
        $dl = ".download" ascii
    condition:
        filesize < 20MB and any of ($html*) and any of ($dec*) and $blob and
        (($url and $dl) or $msave)
}
