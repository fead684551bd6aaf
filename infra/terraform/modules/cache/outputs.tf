output "primary_endpoint" {
  description = "Host name of the primary (TLS on port 6379)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "auth_token_secret_arn" {
  description = "Secrets Manager secret holding the auth token."
  value       = aws_secretsmanager_secret.auth.arn
}
