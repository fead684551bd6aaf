# The stack's outputs, under the names docs/deploy.md uses (`terraform output ...`).

output "api_url" {
  description = "The API (point domain_name's DNS at load_balancer_dns_name)."
  value       = module.stack.api_url
}

output "websocket_url" {
  description = "The realtime endpoint."
  value       = module.stack.websocket_url
}

output "load_balancer_dns_name" {
  description = "CNAME or alias target for domain_name."
  value       = module.stack.load_balancer_dns_name
}

output "repository_url" {
  description = "Push the image here."
  value       = module.stack.repository_url
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = module.stack.cluster_name
}

output "migrate_task_definition" {
  description = "The one-off migrate task (docs/deploy.md)."
  value       = module.stack.migrate_task_definition
}

output "private_subnet_ids" {
  description = "Subnets for one-off tasks."
  value       = module.stack.private_subnet_ids
}

output "worker_security_group_id" {
  description = "Security group for one-off tasks."
  value       = module.stack.worker_security_group_id
}
