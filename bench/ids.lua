-- Picks a random user from bench/out/ids.txt ("id userName" per line).
-- MODE: get (GET /Users/{id}), put (PUT the same user back), page (a random list page).
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do
  local id, name = line:match("(%S+) (%S+)")
  ids[#ids + 1] = {id, name}
end
local mode = os.getenv("MODE")
local token = os.getenv("TOKEN")
local function headers(extra)
  local h = extra or {}
  if token and token ~= "" then h["Authorization"] = "Bearer " .. token end
  return h
end
request = function()
  local pick = ids[math.random(1, #ids)]
  if mode == "get" then
    return wrk.format("GET", "/scim/v2/Users/" .. pick[1], headers())
  elseif mode == "put" then
    local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. pick[2] ..
      '","name":{"givenName":"Put","familyName":"User"},"active":true}'
    return wrk.format("PUT", "/scim/v2/Users/" .. pick[1], headers({["Content-Type"] = "application/scim+json"}), body)
  else
    return wrk.format("GET", "/scim/v2/Users?count=100&startIndex=" .. math.random(1, 9900), headers())
  end
end
