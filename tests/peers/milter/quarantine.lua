-- A quarantine verdict: discard (our own quarantine) or the MTA's hold
-- queue, as the test's -D mode says.
dofile(lib)
local conn = connect_and_negotiate()
send_message(conn, msg, "QHOLD1")
if mt.eom(conn) ~= nil then error("eom") end
if mode == "own" then
  if mt.getreply(conn) ~= SMFIR_DISCARD then error("own quarantine: expected discard") end
else
  if not mt.eom_check(conn, MT_QUARANTINE) then error("hold: no quarantine request") end
  if mt.getreply(conn) ~= SMFIR_ACCEPT then error("hold: expected accept after quarantine") end
end
mt.disconnect(conn)
mt.echo("quarantine: " .. mode)
