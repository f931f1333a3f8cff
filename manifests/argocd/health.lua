-- kube-org health for Argo CD: the same check for the four kinds of kube-org.io.
-- Healthy: Ready=True for the generation in spec. Degraded: Stalled=True (a reason
-- no retry resolves: unknown role, refused email, expired link...). Progressing:
-- anything else (not yet reconciled, sending, waiting for a namespace or a member).
local hs = {status = "Progressing", message = "waiting for kube-org to reconcile"}
if obj.status == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "waiting for kube-org to observe generation " .. obj.metadata.generation
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Stalled" and condition.status == "True" then
      return {status = "Degraded", message = condition.reason .. ": " .. condition.message}
    end
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  return {status = "Healthy", message = ready.message}
end
return {status = "Progressing", message = ready.reason .. ": " .. ready.message}
