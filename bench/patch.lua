-- PATCH requests. MODE=attr: replace displayName of a random user (IDS_FILE: "id userName").
-- MODE=add / MODE=remove: add or remove one random member (MEMBERS_FILE: user ids) of GROUP.
local mode = os.getenv("MODE")
local token = os.getenv("TOKEN")
local ids = {}
for line in io.lines(os.getenv(mode == "attr" and "IDS_FILE" or "MEMBERS_FILE")) do
  ids[#ids + 1] = line:match("(%S+)")
end
local group = os.getenv("GROUP")
local headers = {["Content-Type"] = "application/scim+json", ["Authorization"] = "Bearer " .. token}
local n = 0
request = function()
  n = n + 1
  local id = ids[math.random(1, #ids)]
  if mode == "attr" then
    return wrk.format("PATCH", "/scim/v2/Users/" .. id, headers,
      '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Patched ' .. n .. '"}]}')
  end
  local op = mode == "add" and "add" or "remove"
  return wrk.format("PATCH", "/scim/v2/Groups/" .. group, headers,
    '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"' .. op .. '","path":"members","value":[{"value":"' .. id .. '"}]}]}')
end
