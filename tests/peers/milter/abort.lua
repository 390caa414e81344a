-- An abort in the middle of a message, then a whole message on the same
-- connection: the half message is forgotten, the next one is inspected.
dofile(lib)
local conn = connect_and_negotiate()
send_message(conn, bad, "QABORT1")
if mt.abort(conn) ~= nil then error("abort") end
send_message(conn, msg, "QABORT2")
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_ACCEPT then error("message after abort not accepted") end
mt.disconnect(conn)
mt.echo("abort: next message accepted")
