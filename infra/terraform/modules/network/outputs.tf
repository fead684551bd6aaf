output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "cidr_block" {
  description = "The VPC's address range: the load balancer's addresses, whose forwarded headers the API trusts."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Subnets for the load balancer."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Subnets for tasks and data stores."
  value       = aws_subnet.private[*].id
}

output "security_group_ids" {
  description = "Security groups by role: alb, api, worker, database, cache."
  value = {
    alb      = aws_security_group.alb.id
    api      = aws_security_group.api.id
    worker   = aws_security_group.worker.id
    database = aws_security_group.database.id
    cache    = aws_security_group.cache.id
  }
}
