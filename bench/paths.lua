-- GETs a random path from PATHS_FILE (one path per line), with TOKEN as bearer.
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do paths[#paths + 1] = line end
local token = os.getenv("TOKEN")
request = function()
  return wrk.format("GET", paths[math.random(1, #paths)], {["Authorization"] = "Bearer " .. token})
end
