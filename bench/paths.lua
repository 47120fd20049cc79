-- GETs a random path from PATHS_FILE (one path per line), with TOKEN as bearer.
-- Requests are formatted once, up front: formatting in Lua on every request cost wrk CPU that this
-- 2-core machine's server then lacked. Each wrk thread gets a random seed of its own.
local token = os.getenv("TOKEN")
local headers = {["Authorization"] = "Bearer " .. token}
local requests = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
  requests[#requests + 1] = wrk.format("GET", line, headers)
end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(os.time() + (wrk.thread:get("tid") or 0) * 7919)
end
request = function()
  return requests[math.random(1, #requests)]
end
