output "api_url" {
  description = "The API (point domain_name's DNS at load_balancer_dns_name)."
  value       = "https://${var.domain_name}"
}

output "websocket_url" {
  description = "The realtime endpoint."
  value       = "wss://${var.domain_name}/realtime"
}

output "load_balancer_dns_name" {
  description = "CNAME or alias target for domain_name."
  value       = module.edge.dns_name
}

output "repository_url" {
  description = "Push the image here."
  value       = module.registry.repository_url
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = module.service.cluster_name
}

output "migrate_task_definition" {
  description = "The one-off migrate task (docs/deploy.md)."
  value       = module.service.migrate_task_definition
}

output "private_subnet_ids" {
  description = "Subnets for one-off tasks."
  value       = module.network.private_subnet_ids
}

output "worker_security_group_id" {
  description = "Security group for one-off tasks."
  value       = module.network.security_group_ids.worker
}

output "files_bucket" {
  description = "The files bucket (FILES_S3_BUCKET of every task)."
  value       = module.files.bucket_name
}
