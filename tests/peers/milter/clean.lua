-- A clean message: accepted, with our verdict headers added, and a forged
-- one the sender put in deleted.
dofile(lib)
local conn = connect_and_negotiate()
send_message(conn, msg, "QCLEAN1")
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_ACCEPT then error("clean message not accepted") end
if not mt.eom_check(conn, MT_HDRADD, "X-Portcullis-Action") then error("no X-Portcullis-Action added") end
local v = mt.getheader(conn, "X-Portcullis-Action", 0)
if v == nil or not v:match("^%s*accept$") then error("X-Portcullis-Action is " .. tostring(v)) end
if not mt.eom_check(conn, MT_HDRDELETE, "X-Portcullis-Action") then error("forged header not deleted") end
mt.disconnect(conn)
mt.echo("clean: accepted with headers")
