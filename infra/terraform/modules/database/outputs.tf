output "address" {
  description = "The database host name."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "The database port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "The database Litebase uses."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "The master user name."
  value       = aws_db_instance.this.username
}

output "password_secret_arn" {
  description = "Secrets Manager secret (JSON with username and password) RDS manages."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
