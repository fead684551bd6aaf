output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "migrate_task_definition" {
  description = "Run this one-off task to apply migrations (docs/deploy.md)."
  value       = aws_ecs_task_definition.this["migrate"].arn
}

output "log_group" {
  description = "Where every task logs."
  value       = aws_cloudwatch_log_group.this.name
}
