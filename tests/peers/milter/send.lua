-- Shared by the miltertest scripts: connect to Portcullis' milter door and
-- send one message file (headers, then body) as Postfix would. Variables
-- come from the test with -D: port, msg, and per script expectations.

function connect_and_negotiate()
  local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 10, 0.2)
  if conn == nil then error("cannot connect to the milter door on port " .. port) end
  local err = mt.negotiate(conn, nil, nil, nil)
  if err ~= nil then error("negotiate: " .. err) end
  if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then error("conninfo") end
  if mt.helo(conn, "client.example") ~= nil then error("helo") end
  return conn
end

function read_message(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  text = text:gsub("\r\n", "\n")
  local head, body = text:match("^(.-)\n\n(.*)$")
  if head == nil then head, body = text, "" end
  local headers = {}
  for line in (head .. "\n"):gmatch("(.-)\n") do
    if line:match("^[ \t]") and #headers > 0 then
      headers[#headers].value = headers[#headers].value .. "\n" .. line
    else
      local name, value = line:match("^([^:]+):[ \t]?(.*)$")
      if name ~= nil then table.insert(headers, { name = name, value = value }) end
    end
  end
  return headers, body:gsub("\n", "\r\n")
end

-- Sends a whole transaction up to (not including) end of message.
function send_message(conn, path, queue_id)
  mt.macro(conn, SMFIC_MAIL, "i", queue_id, "{auth_authen}", "alice")
  if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mailfrom") end
  if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mailfrom reply") end
  if mt.rcptto(conn, "<bob@example.com>") ~= nil then error("rcptto") end
  if mt.getreply(conn) ~= SMFIR_CONTINUE then error("rcptto reply") end
  local headers, body = read_message(path)
  for _, h in ipairs(headers) do
    if mt.header(conn, h.name, h.value) ~= nil then error("header " .. h.name) end
  end
  if mt.eoh(conn) ~= nil then error("eoh") end
  if mt.bodystring(conn, body) ~= nil then error("body") end
end
