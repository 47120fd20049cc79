-- POST /Users with unique userNames per thread and request.
local counter = 0
local tid = 0
local n = 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
end
function init(args)
  tid = tid + (wrk.thread:get("tid") or 0)
  math.randomseed(os.time() + tid)
  prefix = tostring(tid) .. "-" .. tostring(math.random(1, 1e9))
end
request = function()
  counter = counter + 1
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bench-' .. prefix .. '-' .. counter ..
    '","name":{"givenName":"Bench","familyName":"User' .. counter .. '"},"emails":[{"value":"b' .. prefix .. '-' .. counter .. '@example.com","type":"work","primary":true}],"active":true}'
  return wrk.format("POST", "/scim/v2/Users", {["Content-Type"] = "application/scim+json", ["Authorization"] = "Bearer " .. os.getenv("TOKEN")}, body)
end
