-- EICAR in a zip: our 5xx reply with our text.
dofile(lib)
local conn = connect_and_negotiate()
send_message(conn, msg, "QEICAR1")
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("no reply code: " .. tostring(mt.getreply(conn))) end
if not mt.eom_check(conn, MT_SMTPREPLY, "554", "5.7.1", "Message rejected by content policy (EICAR_Test_File)") then
  error("wrong SMTP reply")
end
mt.disconnect(conn)
mt.echo("reject: 554 5.7.1 with our text")
