-- PATCH requests. MODE=attr: replace displayName of a random user (IDS_FILE: "id userName").
-- MODE=add / MODE=remove: add or remove one random member (MEMBERS_FILE: user ids) of GROUP.
-- Requests are formatted once, up front (4,000 of them, each a random target; attr bodies carry
-- distinct values), so that wrk spends its CPU sending, not building strings.
local mode = os.getenv("MODE")
local token = os.getenv("TOKEN")
local ids = {}
for line in io.lines(os.getenv(mode == "attr" and "IDS_FILE" or "MEMBERS_FILE")) do
  ids[#ids + 1] = line:match("(%S+)")
end
local group = os.getenv("GROUP")
local headers = {["Content-Type"] = "application/scim+json", ["Authorization"] = "Bearer " .. token}
local requests = {}
-- Each wrk thread has a Lua state of its own with the same default random seed: without a seed per
-- thread both would send the same targets in the same order.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  local tid = wrk.thread:get("tid") or 0
  math.randomseed(os.time() + tid * 7919)
  for n = 1, 4000 do
    local id = ids[math.random(1, #ids)]
    if mode == "attr" then
      requests[n] = wrk.format("PATCH", "/scim/v2/Users/" .. id, headers,
        '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Patched ' .. tid .. '-' .. n .. '"}]}')
    else
      local op = mode == "add" and "add" or "remove"
      requests[n] = wrk.format("PATCH", "/scim/v2/Groups/" .. group, headers,
        '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"' .. op .. '","path":"members","value":[{"value":"' .. id .. '"}]}]}')
    end
  end
end
local n = 0
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end
